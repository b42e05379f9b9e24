//! The app's side of the code flow with a real OpenID Connect client
//! library (`openidconnect`): discovery of the broker, PKCE, the code
//! exchange and the id_token's verification, as an app does them.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreTokenResponse,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse as _,
};

use crate::login::{Browser, CONNECTION, TestBed, http_client};

/// A client built from the broker's discovery document: authorization
/// endpoint set, token and userinfo endpoints as discovered.
pub type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Discovers the broker and builds a client for `client_id` (confidential
/// with `secret`, public without) redirecting to `callback`.
pub async fn oidc_client(
    tb: &TestBed,
    client_id: &str,
    secret: Option<&str>,
    callback: &str,
) -> OidcClient {
    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(tb.issuer.clone()).expect("issuer"),
        &http_client(),
    )
    .await
    .expect("discovery");
    CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.into()),
        secret.map(|s| ClientSecret::new(s.into())),
    )
    .set_redirect_uri(RedirectUrl::new(callback.into()).expect("redirect"))
}

/// The code flow through `client` for the development provider's default
/// user over `CONNECTION`, with `scopes` beside `openid`: PKCE, the login,
/// the `state` checked, the code exchanged; the id_token verified as an app
/// does (signature by `alg`, issuer, audience, nonce). The token response
/// and the verified claims.
pub async fn code_flow(
    tb: &TestBed,
    client: &OidcClient,
    scopes: &[&str],
    alg: CoreJwsSigningAlgorithm,
) -> (CoreTokenResponse, CoreIdTokenClaims) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_extra_param("connection", CONNECTION)
        .set_pkce_challenge(challenge);
    for scope in scopes {
        request = request.add_scope(Scope::new((*scope).into()));
    }
    let (url, csrf, nonce) = request.url();
    let landing = Browser::default().login(tb, url.as_str(), false).await;
    assert_eq!(
        landing.param("state").as_deref(),
        Some(csrf.secret().as_str()),
        "{landing:?}"
    );
    let code = landing.param("code").expect("a code");
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint known")
        .set_pkce_verifier(verifier)
        .request_async(&http_client())
        .await
        .expect("code exchange");
    let verifier = client.id_token_verifier().set_allowed_algs(vec![alg]);
    let claims = tokens
        .id_token()
        .expect("an id_token")
        .claims(&verifier, &nonce)
        .expect("the id_token verifies: signature, issuer, audience, nonce")
        .clone();
    (tokens, claims)
}
