//! `GET /userinfo`: the user behind a bearer token (RFC 6750 §2.1), in the
//! shape of Auth0's example script, `{"account":{"uuid":…,"email":…}}`.

use hyper::StatusCode;
use hyper::header::WWW_AUTHENTICATE;

use super::record::RecordedRequest;
use super::server::{self, Reply, Shared};
use super::{UserinfoFault, lock};

pub(super) fn handle(shared: &Shared, req: &RecordedRequest) -> Reply {
    let fault = lock(&shared.userinfo_fault).clone();
    if let UserinfoFault::Status(status, body) = fault {
        return server::fault(status, &body);
    }
    let Some(token) = req.header("authorization").and_then(bearer_token) else {
        // RFC 6750 §3.1: no error code in the challenge when no
        // credentials were sent.
        let reply =
            server::json_error(StatusCode::UNAUTHORIZED, "invalid_token", "no bearer token");
        return server::with_header(
            reply,
            WWW_AUTHENTICATE,
            r#"Bearer realm="waypass-dev-provider""#,
        );
    };
    let now = shared.now();
    let user = lock(&shared.state).user(token, now).cloned();
    match user {
        Some(user) => server::json(
            StatusCode::OK,
            &serde_json::json!({"account": {"uuid": user.uuid, "email": user.email}}),
        ),
        None => {
            let reply = server::json_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "unknown or expired access token",
            );
            server::with_header(
                reply,
                WWW_AUTHENTICATE,
                r#"Bearer realm="waypass-dev-provider", error="invalid_token""#,
            )
        }
    }
}

/// The token of `Bearer TOKEN`; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
