//! OpenID Connect Back-Channel Logout 1.0: when a session ends, each app it
//! gave a code to that registered a `backchannel_logout_uri` receives a
//! signed logout token by POST (§2.5), server to server.
//!
//! # How it is sent
//!
//! In the background: the browser's logout answers at once, and one slow
//! or dead app never holds it (nor the management call that ended the
//! session). At most [`MAX_IN_FLIGHT`] notifications are sent at a time
//! and at most [`MAX_QUEUED`] wait; past that, new ones are dropped and
//! logged (a flood of logouts cannot grow the broker's memory). Each
//! attempt has [`ATTEMPT_TIMEOUT`]; a failed one (no answer, or a 5xx) is
//! retried up to [`ATTEMPTS`] times in all, after [`RETRY_DELAY`], then
//! twice that. A 4xx is final: the app read the token and refused it
//! (§2.8), and the same token would be refused again.
//!
//! The request meets the egress address rules (`egress::vetted_addresses`):
//! cloud metadata addresses never, loopback and private addresses only for
//! a URI that names an IP literal or a private name (which, through the
//! management API, needs `write:egress`). A public name that resolves to a
//! private address is refused. Redirects are not followed (§2.5).
//!
//! Notifications in flight when the process stops are lost: the app's own
//! session then ends at its own expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use serde::Serialize;
use url::Url;

use super::Broker;
use crate::egress::{HttpError, NetworkTransport, PreparedRequest, Transport};
use crate::keys::TokenType;
use crate::model::{Client, backchannel_is_private};
use crate::store::Session;

/// Notifications sent at once: a logout of a session used by many apps
/// reaches them together; many logouts at once wait their turn.
pub const MAX_IN_FLIGHT: usize = 16;
/// Notifications waiting to be sent, at most. A notification is a few
/// hundred bytes; 10 000 is far above what a broker's logouts produce
/// between two seconds.
pub const MAX_QUEUED: usize = 10_000;
/// Time for one attempt, connection and answer included: an app's logout
/// endpoint only clears local state.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per notification, the first included.
pub const ATTEMPTS: u32 = 3;
/// Pause before the second attempt; doubled before the third.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);
/// A logout token is valid for two minutes (§2.4 requires `exp`; it is
/// used at once, so a short life keeps a captured one useless).
pub const LOGOUT_TOKEN_TTL: u64 = 120;
/// The app's answer body is not read beyond this (§2.8: it may explain a
/// refusal; nothing in it is used).
const MAX_ANSWER_BYTES: usize = 4096;

/// The event a logout token carries (§2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The claims of a logout token (§2.4): `sub` and `sid` both, no `nonce`.
#[derive(Debug, Serialize)]
struct LogoutTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
    sid: &'a str,
    events: Events,
}

/// `{"http://schemas.openid.net/event/backchannel-logout": {}}`.
#[derive(Debug, Serialize)]
struct Events {
    #[serde(rename = "http://schemas.openid.net/event/backchannel-logout")]
    backchannel_logout: Empty,
}

#[derive(Debug, Serialize)]
struct Empty {}

/// The sender: the HTTP client and the bounds on what is in flight.
pub(crate) struct Backchannel {
    transport: Arc<dyn Transport>,
    slots: Arc<tokio::sync::Semaphore>,
    queued: Arc<AtomicUsize>,
}

impl Backchannel {
    pub(crate) fn new() -> Self {
        Self::with_transport(Arc::new(NetworkTransport::new()))
    }

    pub(crate) fn with_transport(transport: Arc<dyn Transport>) -> Self {
        Self {
            transport,
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            queued: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// One notification on its way.
struct Notification {
    client_id: String,
    url: Url,
    logout_token: String,
}

impl Broker {
    /// Tells every app `session` gave a code to, that registered a
    /// back-channel logout URI, that the session ended. Returns at once.
    pub(crate) fn backchannel_logout(&self, session: &Session) {
        let now = self.clock.now();
        for client_id in &session.clients {
            let Some(client) = self.client(client_id) else {
                continue;
            };
            let Some(uri) = client.backchannel_logout_uri.as_deref() else {
                continue;
            };
            let Ok(url) = Url::parse(uri) else {
                tracing::warn!(client_id, "the app's backchannel logout URL does not parse");
                continue;
            };
            match self.logout_token(&client, session, now) {
                Ok(logout_token) => self.send_logout(Notification {
                    client_id: client_id.clone(),
                    url,
                    logout_token,
                }),
                Err(e) => tracing::error!(client_id, error = %e, "cannot sign a logout token"),
            }
        }
    }

    fn logout_token(
        &self,
        client: &Client,
        session: &Session,
        now: u64,
    ) -> Result<String, crate::keys::KeyError> {
        let claims = LogoutTokenClaims {
            iss: self.issuer(),
            sub: &session.user_id,
            aud: &client.client_id,
            iat: now,
            exp: now + LOGOUT_TOKEN_TTL,
            jti: self.random.identifier(32),
            sid: &session.id,
            events: Events {
                backchannel_logout: Empty {},
            },
        };
        self.keys
            .load()
            .sign_as(client.id_token_alg, TokenType::LogoutToken, &claims)
    }

    /// Queues one notification, unless [`MAX_QUEUED`] are waiting.
    fn send_logout(&self, notification: Notification) {
        let channel = &self.backchannel;
        if channel.queued.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED {
            channel.queued.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(client_id = %notification.client_id, max = MAX_QUEUED,
                "too many back-channel logouts waiting; this one is dropped");
            return;
        }
        let slots = Arc::clone(&channel.slots);
        let queued = Arc::clone(&channel.queued);
        let transport = Arc::clone(&channel.transport);
        tokio::spawn(async move {
            let permit = slots.acquire_owned().await;
            queued.fetch_sub(1, Ordering::AcqRel);
            if permit.is_err() {
                return;
            }
            deliver(&*transport, notification).await;
        });
    }
}

/// Sends one notification, retrying as the module documentation says.
async fn deliver(transport: &dyn Transport, n: Notification) {
    let allow_private = backchannel_is_private(&n.url);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", &n.logout_token)
        .finish();
    let mut delay = RETRY_DELAY;
    for attempt in 1..=ATTEMPTS {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let request = PreparedRequest {
            method: Method::POST,
            url: n.url.clone(),
            headers,
            body: Bytes::from(body.clone()),
        };
        let sent = tokio::time::timeout(ATTEMPT_TIMEOUT, async {
            let addrs = crate::egress::vetted_addresses(&n.url, allow_private, transport).await?;
            transport.send(request, addrs, MAX_ANSWER_BYTES).await
        })
        .await
        .unwrap_or(Err(HttpError::Timeout));
        match sent {
            Ok(answer) if (200..300).contains(&answer.status) => {
                tracing::info!(client_id = %n.client_id, attempt, "back-channel logout delivered");
                return;
            }
            Ok(answer) if (400..500).contains(&answer.status) => {
                tracing::warn!(client_id = %n.client_id, status = answer.status,
                    "the app refused the back-channel logout token");
                return;
            }
            Ok(answer) => tracing::warn!(client_id = %n.client_id, attempt, status = answer.status,
                "back-channel logout failed"),
            Err(HttpError::Denied(why)) => {
                tracing::warn!(client_id = %n.client_id, %why,
                    "back-channel logout refused by the address rules");
                return;
            }
            Err(e) => tracing::warn!(client_id = %n.client_id, attempt, error = %e,
                "back-channel logout failed"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    tracing::warn!(client_id = %n.client_id, attempts = ATTEMPTS, "back-channel logout gave up");
}
