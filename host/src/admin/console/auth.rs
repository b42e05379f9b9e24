//! Signing in to the console, its sessions and its form tokens.
//!
//! Two ways in:
//! - the bootstrap admin token, pasted into a form: compared in constant
//!   time ([`crate::secret::SecretHash::matches`]); a wrong one counts
//!   against the address's failed-authentication limit of the management
//!   API (the same secret, the same guessing budget);
//! - Waypass itself, as an OpenID Connect app: the authorization code flow
//!   with PKCE (RFC 7636) against this broker's own `/authorize`, the code
//!   redeemed and the user read in-process (`token`, `userinfo`), for a
//!   user with the console role.
//!
//! A session lives in the store's session table, under the SHA-256 of its
//! cookie value with a console-only prefix, so a console cookie is never a
//! broker session nor the reverse. It lasts [`CONSOLE_SESSION_TTL`]; the
//! console role is checked again at every request, so taking it away (or
//! deleting the user) ends the person's access at once.

use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::{Response, StatusCode, header};
use serde::Deserialize;

use super::{Body, Ctx, Form, PREFIX, Req, error_page, html, pages, redirect, set_header};
use crate::admin::Caller;
use crate::secret::{SecretHash, ct_eq, pkce_challenge};
use crate::store::{Session, SessionLogin};

/// The console session's cookie (with `__Host-` when the issuer is https).
pub const CONSOLE_SESSION_COOKIE: &str = "wp_console";
/// The cookie carrying a sign-in in progress: the login form's token, or
/// the OpenID Connect `state` and PKCE verifier.
pub const CONSOLE_LOGIN_COOKIE: &str = "wp_console_login";
/// How long a console session lasts: a working day. Management power is
/// worth a new sign-in each day; there is no idle extension to keep one
/// alive for ever in a forgotten tab.
pub const CONSOLE_SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Time to finish a sign-in (the provider's login included): the
/// broker's own login transaction lifetime.
const SIGN_IN_TTL: Duration = crate::broker::LOGIN_TRANSACTION_TTL;
/// The form field carrying the synchronizer token.
pub(super) const CSRF_FIELD: &str = "csrf";
/// What a console session records as the way it signed in: never a
/// connection name (those cannot hold `:`), so no single sign-on of the
/// broker ever matches it.
const CONSOLE_LOGIN: &str = "waypass:console";
/// The subject of a session signed in with the admin token.
const ADMIN_TOKEN_SUBJECT: &str = "waypass:admin-token";
/// `app_metadata` flag giving a user the console role through the API.
pub const CONSOLE_ROLE_METADATA: &str = "console_admin";

/// The store key of a console session: its cookie's hash, with a prefix
/// no broker session key has.
fn session_key(cookie: &str) -> SecretHash {
    SecretHash::of(&format!("waypass-console-session:{cookie}"))
}

/// A form token derived from a secret only the browser's cookie holds:
/// a cross-site page can neither read the cookie nor compute the token.
fn form_token(purpose: &str, cookie: &str) -> String {
    SecretHash::of(&format!("waypass-console-{purpose}:{cookie}")).to_hex()
}

fn cookie_name(req: &Req<'_>, base: &str) -> String {
    if req.broker.secure_cookies() {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// A console cookie: `HttpOnly`; `__Host-`, `Secure` and `Path=/` with an
/// https issuer (RFC 6265bis §4.1.3.2), else kept to `/admin`.
fn set_cookie(
    req: &Req<'_>,
    base: &str,
    value: String,
    max_age: Duration,
    same_site: SameSite,
) -> String {
    let secure = req.broker.secure_cookies();
    Cookie::build((cookie_name(req, base), value))
        .path(if secure { "/" } else { PREFIX })
        .secure(secure)
        .http_only(true)
        .same_site(same_site)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .build()
        .to_string()
}

fn cookie(req: &Req<'_>, base: &str) -> Option<String> {
    let name = cookie_name(req, base);
    req.headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value_trimmed().to_owned())
}

/// The sign-in page; a fresh login cookie carries its form token.
pub(super) async fn login_page(req: &Req<'_>, error: Option<String>) -> Response<Body> {
    login_page_with(req, error, StatusCode::OK)
}

fn login_page_with(req: &Req<'_>, error: Option<String>, status: StatusCode) -> Response<Body> {
    let secret = req.broker.random.token();
    let page = pages::Login {
        css: super::css_path(),
        csrf: form_token("login", &secret),
        oidc: req.broker.console.client_id.is_some(),
        error,
    };
    let mut resp = html(status, askama::Template::render(&page));
    // Strict: the form posts from this origin only.
    let cookie = set_cookie(
        req,
        CONSOLE_LOGIN_COOKIE,
        format!("form.{secret}"),
        SIGN_IN_TTL,
        SameSite::Strict,
    );
    set_header(&mut resp, header::SET_COOKIE, &cookie);
    resp
}

/// `POST /admin/login`: the admin token from the form.
pub(super) async fn token_sign_in(req: &Req<'_>) -> Response<Body> {
    let form_ok = cookie(req, CONSOLE_LOGIN_COOKIE)
        .and_then(|c| c.strip_prefix("form.").map(str::to_owned))
        .zip(req.form.get(CSRF_FIELD))
        .is_some_and(|(secret, sent)| ct_eq(sent, &form_token("login", &secret)));
    if !form_ok {
        return login_page_with(
            req,
            Some("The sign-in form expired or was not sent from this page; try again.".into()),
            StatusCode::FORBIDDEN,
        );
    }
    let limits = req.broker.rate_limits();
    if let Err(wait) = limits.api_failures_allow(req.from) {
        let mut resp = login_page_with(
            req,
            Some(format!(
                "Too many failed sign-ins from this address; try again in {} s.",
                wait.seconds()
            )),
            StatusCode::TOO_MANY_REQUESTS,
        );
        set_header(&mut resp, header::RETRY_AFTER, &wait.seconds().to_string());
        return resp;
    }
    let token = req.form.get("token").unwrap_or("").trim();
    let valid = req
        .broker
        .admin_token
        .is_some_and(|hash| hash.matches(token));
    if !valid {
        limits.api_failure(req.from);
        return login_page_with(
            req,
            Some("That is not the admin token.".into()),
            StatusCode::UNAUTHORIZED,
        );
    }
    start_session(req, ADMIN_TOKEN_SUBJECT).await
}

/// `GET /admin/login/oidc[?connection=NAME]`: to this broker's
/// `/authorize` as the console app, with a fresh `state` and PKCE verifier kept in the login cookie.
pub(super) fn oidc_start(req: &Req<'_>) -> Response<Body> {
    let Some(client_id) = &req.broker.console.client_id else {
        return error_page(
            StatusCode::NOT_FOUND,
            "Not configured",
            "No console app is configured (`[console] client_id`): sign in with the admin token.",
        );
    };
    let state = req.broker.random.token();
    let verifier = req.broker.random.token();
    let mut url = match url::Url::parse(&format!("{}/authorize", req.broker.issuer())) {
        Ok(url) => url,
        Err(e) => {
            tracing::error!(error = %e, "the issuer does not make an /authorize URL");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in unavailable",
                "The issuer URL is not usable.",
            );
        }
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &callback_url(req))
        .append_pair("scope", "openid")
        .append_pair("state", &state)
        .append_pair("code_challenge", &pkce_challenge(&verifier))
        .append_pair("code_challenge_method", "S256");
    // A connection chosen beforehand skips the broker's choice page.
    if let Some(connection) = Form::parse(req.query.as_bytes()).get("connection") {
        url.query_pairs_mut().append_pair("connection", connection);
    }
    let mut resp = redirect(url.as_str());
    // Lax: the provider's redirect back, through the broker, is a
    // top-level navigation from another site.
    let cookie = set_cookie(
        req,
        CONSOLE_LOGIN_COOKIE,
        format!("oidc.{state}.{verifier}"),
        SIGN_IN_TTL,
        SameSite::Lax,
    );
    set_header(&mut resp, header::SET_COOKIE, &cookie);
    resp
}

fn callback_url(req: &Req<'_>) -> String {
    format!("{}{PREFIX}/callback", req.broker.issuer())
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
}

#[derive(Deserialize)]
struct UserInfo {
    sub: String,
}

#[derive(Deserialize)]
struct OAuthErrorAnswer {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// `GET /admin/callback`: the code from this broker, checked against the
/// login cookie's `state` (RFC 6749 §10.12), redeemed with the PKCE
/// verifier, and the user's console role checked.
pub(super) async fn oidc_callback(req: &Req<'_>) -> Response<Body> {
    let Some(client_id) = req.broker.console.client_id.clone() else {
        return error_page(
            StatusCode::NOT_FOUND,
            "Not configured",
            "No console app is configured.",
        );
    };
    let params: Form = Form::parse(req.query.as_bytes());
    if let Some(error) = params.get("error") {
        let description = params.get("error_description").unwrap_or("");
        return login_page_with(
            req,
            Some(format!("The sign-in was refused: {error} {description}")),
            StatusCode::BAD_REQUEST,
        );
    }
    let pending = cookie(req, CONSOLE_LOGIN_COOKIE);
    let pending = pending
        .as_deref()
        .and_then(|c| c.strip_prefix("oidc."))
        .and_then(|c| c.split_once('.'));
    let (Some((state, verifier)), Some(sent_state), Some(code)) =
        (pending, params.get("state"), params.get("code"))
    else {
        return login_page_with(
            req,
            Some("This sign-in did not start in this browser, or it expired; try again.".into()),
            StatusCode::BAD_REQUEST,
        );
    };
    if !ct_eq(state, sent_state) {
        return login_page_with(
            req,
            Some("This sign-in did not start in this browser; try again.".into()),
            StatusCode::BAD_REQUEST,
        );
    }
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", &callback_url(req))
        .append_pair("client_id", &client_id)
        .append_pair("code_verifier", verifier)
        .finish();
    let reply = req.broker.token(&form, None, req.from).await;
    let access_token = match serde_json::from_str::<TokenAnswer>(&reply.body) {
        Ok(answer) if reply.status == 200 => answer.access_token,
        _ => {
            let why = serde_json::from_str::<OAuthErrorAnswer>(&reply.body)
                .map(|e| format!("{} {}", e.error, e.error_description))
                .unwrap_or_else(|_| format!("the token endpoint answered {}", reply.status));
            return login_page_with(
                req,
                Some(format!("The sign-in could not be completed: {why}")),
                StatusCode::BAD_REQUEST,
            );
        }
    };
    let info = req
        .broker
        .userinfo(Some(&format!("Bearer {access_token}")))
        .await;
    let Ok(user) = serde_json::from_str::<UserInfo>(&info.body) else {
        return login_page_with(
            req,
            Some("The signed-in user could not be read.".into()),
            StatusCode::BAD_GATEWAY,
        );
    };
    if !has_console_role(req, &user.sub).await {
        tracing::info!(user_id = %user.sub, "console sign-in refused: no console role");
        return login_page_with(
            req,
            Some(format!(
                "{} does not have the console role. Ask an administrator to add it.",
                user.sub
            )),
            StatusCode::FORBIDDEN,
        );
    }
    start_session(req, &user.sub).await
}

/// Whether `user_id` holds the console role now: named in `[console]
/// admins`, or flagged in its `app_metadata`. A store failure refuses.
async fn has_console_role(req: &Req<'_>, user_id: &str) -> bool {
    if req.broker.console.admins.iter().any(|a| a == user_id) {
        return true;
    }
    match req.broker.store.get_user(user_id).await {
        Ok(Some(user)) => user.app_metadata.get(CONSOLE_ROLE_METADATA) == Some(&true.into()),
        Ok(None) => false,
        Err(e) => {
            tracing::error!(error = %e, "cannot read a console user");
            false
        }
    }
}

async fn start_session(req: &Req<'_>, subject: &str) -> Response<Body> {
    let secret = req.broker.random.token();
    let now = req.broker.clock.now();
    let expires = now + CONSOLE_SESSION_TTL.as_secs();
    let session = Session {
        id: format!("ses_{}", req.broker.random.identifier(24)),
        user_id: subject.to_owned(),
        logins: vec![SessionLogin {
            connection: CONSOLE_LOGIN.into(),
            auth_time: now,
        }],
        clients: Vec::new(),
        created_at: now,
        last_active: now,
        idle_expires_at: expires,
        expires_at: expires,
    };
    if let Err(e) = req
        .broker
        .store
        .put_session(session_key(&secret), &session)
        .await
    {
        tracing::error!(error = %e, "cannot store a console session");
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The store is unavailable; try again.",
        );
    }
    tracing::info!(subject, session = %session.id, "console sign-in");
    let mut resp = redirect(&format!("{PREFIX}/connections"));
    let session_cookie = set_cookie(
        req,
        CONSOLE_SESSION_COOKIE,
        secret,
        CONSOLE_SESSION_TTL,
        SameSite::Strict,
    );
    set_header(&mut resp, header::SET_COOKIE, &session_cookie);
    let cleared = set_cookie(
        req,
        CONSOLE_LOGIN_COOKIE,
        String::new(),
        Duration::ZERO,
        SameSite::Lax,
    );
    set_header(&mut resp, header::SET_COOKIE, &cleared);
    resp
}

/// The request's console session, if it has a live one whose person still
/// holds the console role.
pub(super) async fn signed_in(req: &Req<'_>) -> Option<Ctx> {
    let secret = cookie(req, CONSOLE_SESSION_COOKIE)?;
    let now = req.broker.clock.now();
    let session = match req
        .broker
        .store
        .get_session(session_key(&secret), now)
        .await
    {
        Ok(session) => session?,
        Err(e) => {
            tracing::error!(error = %e, "cannot read a console session");
            return None;
        }
    };
    if !session.logins.iter().any(|l| l.connection == CONSOLE_LOGIN) {
        return None;
    }
    let (caller, who) = if session.user_id == ADMIN_TOKEN_SUBJECT {
        (Caller::console_admin_token(), "admin token".to_owned())
    } else if has_console_role(req, &session.user_id).await {
        (
            Caller::console_user(&session.user_id),
            session.user_id.clone(),
        )
    } else {
        return None;
    };
    Some(Ctx {
        caller,
        who,
        csrf: form_token("csrf", &secret),
        session_id: session.id,
    })
}

/// `POST /admin/logout`: deletes the session and its cookie.
pub(super) async fn sign_out(req: &Req<'_>, ctx: &Ctx) -> Response<Body> {
    if let Err(e) = req.broker.store.delete_session(&ctx.session_id).await {
        tracing::error!(error = %e, "cannot delete a console session");
    }
    let mut resp = redirect(&format!("{PREFIX}/login"));
    let cleared = set_cookie(
        req,
        CONSOLE_SESSION_COOKIE,
        String::new(),
        Duration::ZERO,
        SameSite::Strict,
    );
    set_header(&mut resp, header::SET_COOKIE, &cleared);
    resp
}
