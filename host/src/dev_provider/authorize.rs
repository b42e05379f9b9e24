//! The authorization endpoint (RFC 6749 §4.1.1, §4.1.2): `GET` checks the
//! request and shows the login form; `POST` is the form's answer.

use hyper::StatusCode;
use subtle::ConstantTimeEq;
use url::Url;

use super::html::{self, LoginForm};
use super::lock;
use super::oauth::{self, AuthRequest};
use super::record::{RecordedRequest, repeated};
use super::server::{self, Reply, Shared};

/// Parameters that must appear at most once (RFC 6749 §3.1).
const SINGLE: &[&str] = &[
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
];

/// `GET /authorize`.
///
/// Until the client and its redirect URI are known good, errors are an
/// HTML page and never a redirect (RFC 6749 §4.1.2.1: the user agent must
/// not be sent to an unverified URI); after that they are redirects.
pub(super) fn show(shared: &Shared, req: &RecordedRequest) -> Reply {
    if let Some(name) = repeated(&req.query, &["client_id", "redirect_uri"]) {
        return error_page(&format!("The parameter {name} is given more than once."));
    }
    let Some(client_id) = req.query_param("client_id") else {
        return error_page("The request has no client_id.");
    };
    let Some(client) = shared.client(client_id) else {
        return error_page(&format!("There is no client {client_id:?}."));
    };
    let Some(redirect_uri) = req.query_param("redirect_uri") else {
        return error_page("The request has no redirect_uri.");
    };
    // RFC 6749 §3.1.2.3, RFC 9700 §4.1.1: exact string comparison.
    if redirect_uri != client.redirect_uri {
        return error_page(&format!(
            "The redirect_uri {redirect_uri:?} is not the one registered for {client_id:?}."
        ));
    }

    let state = req.query_param("state").map(str::to_owned);
    let fail = |code: &str, description: &str| {
        let mut params = vec![("error", code), ("error_description", description)];
        if let Some(state) = &state {
            params.push(("state", state));
        }
        redirect_to(shared, redirect_uri, &params)
    };
    if let Some(name) = repeated(&req.query, SINGLE) {
        return fail(
            "invalid_request",
            &format!("{name} is given more than once"),
        );
    }
    match req.query_param("response_type") {
        Some("code") => {}
        None => return fail("invalid_request", "response_type is missing"),
        Some(_) => {
            return fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
    }
    let code_challenge = match (
        req.query_param("code_challenge"),
        req.query_param("code_challenge_method"),
    ) {
        (None, None) => None,
        (Some(challenge), Some("S256")) if oauth::is_pkce_value(challenge) => {
            Some(challenge.to_owned())
        }
        (Some(_), Some("S256")) => {
            return fail(
                "invalid_request",
                "code_challenge must be 43 to 128 unreserved characters",
            );
        }
        (None, Some(_)) => {
            return fail(
                "invalid_request",
                "code_challenge_method without code_challenge",
            );
        }
        // RFC 7636 §4.4.1; a missing method means `plain` (§4.3).
        (Some(_), _) => {
            return fail(
                "invalid_request",
                "only code_challenge_method=S256 is supported",
            );
        }
    };

    let request = AuthRequest {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        state: state.clone(),
        scope: req.query_param("scope").unwrap_or_default().to_owned(),
        code_challenge,
        nonce: req.query_param("nonce").map(str::to_owned),
    };
    let now = shared.now();
    let begun = lock(&shared.state).begin(request.clone(), now, &shared.rng);
    match begun {
        Ok(id) => login_form(shared, &request, &id, "", None),
        Err(error) => fail("temporarily_unavailable", &error.to_string()),
    }
}

/// `POST /authorize`: fields `request`, `username`, `password`, `action`
/// (`login`, the default, or `deny`).
pub(super) fn submit(shared: &Shared, req: &RecordedRequest) -> Reply {
    let id = req.form_param("request").unwrap_or_default();
    let now = shared.now();
    let Some(request) = lock(&shared.state).pending(id, now).cloned() else {
        return error_page("This login request is unknown or has expired.");
    };
    match req.form_param("action").unwrap_or("login") {
        "deny" => {
            if lock(&shared.state).finish(id, now).is_none() {
                return error_page("This login request was already answered.");
            }
            let mut params = vec![
                ("error", "access_denied"),
                ("error_description", "the user denied the request"),
            ];
            if let Some(state) = &request.state {
                params.push(("state", state));
            }
            redirect_to(shared, &request.redirect_uri, &params)
        }
        "login" => {
            let username = req.form_param("username").unwrap_or_default();
            let password = req.form_param("password").unwrap_or_default();
            let Some(account) = shared.accounts.iter().find(|a| {
                a.username == username
                    && bool::from(a.password.as_bytes().ct_eq(password.as_bytes()))
            }) else {
                return login_form(
                    shared,
                    &request,
                    id,
                    username,
                    Some("Unknown username or wrong password."),
                );
            };
            let issued = {
                let mut state = lock(&shared.state);
                state.finish(id, now).map(|request| {
                    state.issue_code(request, account.user.clone(), now, &shared.rng)
                })
            };
            let code = match issued {
                None => return error_page("This login request was already answered."),
                Some(Err(error)) => {
                    return error_page(&format!("The provider is unavailable: {error}."));
                }
                Some(Ok(code)) => code,
            };
            let mut params = vec![("code", code.as_str())];
            if let Some(state) = &request.state {
                params.push(("state", state));
            }
            redirect_to(shared, &request.redirect_uri, &params)
        }
        _ => error_page("The action must be login or deny."),
    }
}

fn login_form(
    shared: &Shared,
    request: &AuthRequest,
    id: &str,
    username: &str,
    error: Option<&str>,
) -> Reply {
    let form = LoginForm {
        client_id: &request.client_id,
        scope: &request.scope,
        request_id: id,
        usernames: shared
            .accounts
            .iter()
            .map(|a| a.username.as_str())
            .collect(),
        username,
        error,
    };
    server::html(StatusCode::OK, html::login_page(&form))
}

fn error_page(message: &str) -> Reply {
    server::html(StatusCode::BAD_REQUEST, html::error_page(message))
}

/// A redirect to the client with `params` added to its redirect URI's query,
/// and `iss` (RFC 9207 §2) unless turned off.
fn redirect_to(shared: &Shared, redirect_uri: &str, params: &[(&str, &str)]) -> Reply {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return error_page("The client's registered redirect_uri is not an absolute URL.");
    };
    {
        let mut query = url.query_pairs_mut();
        query.extend_pairs(params);
        if shared.issuer_parameter {
            query.append_pair("iss", &shared.origin);
        }
    }
    server::redirect(url.as_str())
}
