//! A small but real OAuth2 provider for `waypass quickstart` and end-to-end
//! tests: the authorization code grant (RFC 6749 §4.1) with PKCE (RFC 7636),
//! refresh tokens, and a userinfo endpoint in the shape of Auth0's example
//! script.
//!
//! | endpoint | what |
//! | --- | --- |
//! | `GET /authorize` | checks the client and its exact redirect URI, shows a login form |
//! | `POST /authorize` | the form: `request`, `username`, `password`, `action=login\|deny` |
//! | `POST /token` | `authorization_code` and `refresh_token` grants, `client_secret_basic` or `client_secret_post` |
//! | `GET /userinfo` | `{"account":{"uuid":…,"email":…}}` for a bearer token |
//! | `GET /.well-known/openid-configuration` | OpenID Connect discovery |
//! | `GET /jwks` | the keys id_tokens are signed with ([`DevProviderHandle::rotate_keys`]) |
//! | `GET /oidc/userinfo` | standard claims (`sub`, `email`, …) for a bearer token |
//!
//! With the `openid` scope, token responses carry an id_token (RS256,
//! the authorization request's `nonce`), shaped by [`IdTokenFault`]. A
//! client may authenticate with `private_key_jwt` ([`DevClientAuth`]):
//! the provider fetches its JWKS and checks the assertion as RFC 7523 §3
//! says. [`TokenStyle::GitHub`] answers token requests as GitHub does.
//!
//! A test logs in without a browser by `GET`ting the authorization URL,
//! reading the pending request's id from the form with
//! [`login_request_id`], and posting `request`, `username`, `password` and
//! `action=login` to `/authorize`: the answer is a `302` to the client's
//! redirect URI with `code`, `state` and `iss`.
//!
//! Every request is recorded ([`DevProviderHandle::requests`]) so tests can
//! check what the broker sent, and the token and userinfo endpoints can be
//! told to misbehave ([`TokenFault`], [`UserinfoFault`]) while running.
//!
//! # Layout
//!
//! - `oauth`: the authorization server's state and rules, without HTTP.
//! - `server`: the hyper server and the routing; `authorize`, `token` and
//!   `userinfo` are its handlers; `html` renders the pages.
//! - `record`: [`RecordedRequest`].

mod authorize;
mod html;
mod oauth;
mod oidc;
mod record;
mod server;
mod token;
mod userinfo;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use record::RecordedRequest;

/// The username of the account the provider has when none is configured.
pub const DEFAULT_USERNAME: &str = "ada";
/// The password of the default account.
pub const DEFAULT_PASSWORD: &str = "lovelace";

/// The user behind the default account ([`DEFAULT_USERNAME`]).
pub fn default_user() -> DevUser {
    DevUser {
        uuid: "0c2f5a4e-7d1b-4c39-9a8e-ada1815ada00".into(),
        email: "ada@example.com".into(),
    }
}

/// What the userinfo endpoint says about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevUser {
    /// Stable identifier: `account.uuid`.
    pub uuid: String,
    /// `account.email`.
    pub email: String,
}

/// How `POST /token` answers; set with [`DevProviderHandle::set_token_fault`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TokenFault {
    /// Per RFC 6749.
    #[default]
    Normal,
    /// This status and body to every request (JSON content type if the body
    /// parses as JSON, else plain text); an invalid status becomes 500.
    Status(u16, String),
    /// `200` with a body that is not JSON, labelled `application/json` so
    /// that a client's parser, not its content-type check, meets it.
    Garbage,
}

/// How `GET /userinfo` answers; set with [`DevProviderHandle::set_userinfo_fault`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UserinfoFault {
    /// The user behind the bearer token, or `401`.
    #[default]
    Normal,
    /// This status and body to every request, as for [`TokenFault::Status`].
    Status(u16, String),
}

/// How `POST /token` encodes its answers; set with
/// [`DevProviderHandle::set_token_style`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TokenStyle {
    /// JSON, per RFC 6749 §5.1 and §5.2.
    #[default]
    Standard,
    /// As GitHub: `application/x-www-form-urlencoded` bodies, a lower-case
    /// `token_type`, `expires_in` as text, and errors inside a `200`.
    GitHub,
}

/// How id_tokens come out; set with [`DevProviderHandle::set_id_token_fault`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IdTokenFault {
    #[default]
    Normal,
    /// Signed by a key the JWKS does not hold, under a published `kid`.
    ForeignKey,
    /// Another audience than the client.
    Audience(String),
    /// The id_token issued last, again (another login's nonce).
    ReplayPrevious,
    /// No id_token at all.
    Omit,
}

/// How a client authenticates at `POST /token`; set with
/// [`DevProviderHandle::set_client_auth`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DevClientAuth {
    /// Its secret, `client_secret_basic` or `client_secret_post`.
    #[default]
    Secret,
    /// RFC 7523: an assertion signed by a key of the JWKS at `jwks_uri`.
    PrivateKeyJwt { jwks_uri: String },
    /// A public client: its id and PKCE.
    None,
}

/// A source of the current time, so tests can let codes expire.
type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The provider's configuration; [`start`](Self::start) or
/// [`serve`](Self::serve) runs it.
#[derive(Clone)]
pub struct DevProvider {
    accounts: Vec<Account>,
    clients: Vec<Client>,
    tokens: Vec<(String, DevUser)>,
    issuer_parameter: bool,
    origin: Option<String>,
    clock: Clock,
}

/// Someone who can log in at the form.
#[derive(Clone)]
struct Account {
    username: String,
    password: String,
    user: DevUser,
}

/// An OAuth2 client (a confidential one: it has a secret).
#[derive(Clone)]
struct Client {
    id: String,
    secret: String,
    redirect_uri: String,
}

impl Default for DevProvider {
    fn default() -> Self {
        Self {
            accounts: Vec::new(),
            clients: Vec::new(),
            tokens: Vec::new(),
            issuer_parameter: true,
            origin: None,
            clock: Arc::new(SystemTime::now),
        }
    }
}

impl fmt::Debug for DevProvider {
    /// Names accounts and clients, never their secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevProvider")
            .field(
                "accounts",
                &self
                    .accounts
                    .iter()
                    .map(|a| &a.username)
                    .collect::<Vec<_>>(),
            )
            .field(
                "clients",
                &self.clients.iter().map(|c| &c.id).collect::<Vec<_>>(),
            )
            .field("tokens", &self.tokens.len())
            .field("issuer_parameter", &self.issuer_parameter)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl DevProvider {
    /// A provider with no clients, and the default account
    /// ([`DEFAULT_USERNAME`] / [`DEFAULT_PASSWORD`]) unless
    /// [`with_account`](Self::with_account) adds others.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `token` an access token for `user` that never expires.
    pub fn with_token(mut self, token: impl Into<String>, user: DevUser) -> Self {
        self.tokens.push((token.into(), user));
        self
    }

    /// Adds an account that logs in at the form as `username` / `password`.
    /// The first one replaces the default account.
    pub fn with_account(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
        user: DevUser,
    ) -> Self {
        self.accounts.push(Account {
            username: username.into(),
            password: password.into(),
            user,
        });
        self
    }

    /// Registers a client. `redirect_uri` is compared exactly: an
    /// authorization request must carry this very string.
    pub fn with_client(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        self.clients.push(Client {
            id: client_id.into(),
            secret: client_secret.into(),
            redirect_uri: redirect_uri.into(),
        });
        self
    }

    /// Whether authorization responses carry `iss` (RFC 9207); on by default.
    pub fn with_issuer_parameter(mut self, on: bool) -> Self {
        self.issuer_parameter = on;
        self
    }

    /// The origin the provider calls itself (the `iss` value); by default
    /// `http://` and the listener's address.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Reads the time from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Serves on `listener` in a new task (call it inside a Tokio runtime);
    /// the handle stops it when dropped.
    pub fn start(self, listener: TcpListener) -> DevProviderHandle {
        let addr = listening_address(&listener);
        let shared = Arc::new(self.into_shared(addr));
        let task = tokio::spawn(server::run(listener, shared.clone()));
        DevProviderHandle { addr, shared, task }
    }

    /// Serves on `listener` until the task is dropped.
    pub async fn serve(self, listener: TcpListener) {
        let addr = listening_address(&listener);
        server::run(listener, Arc::new(self.into_shared(addr))).await;
    }

    fn into_shared(mut self, addr: SocketAddr) -> server::Shared {
        if self.accounts.is_empty() {
            self = self.with_account(DEFAULT_USERNAME, DEFAULT_PASSWORD, default_user());
        }
        let origin = self.origin.take().unwrap_or_else(|| origin_of(addr));
        let state = oauth::State::with_tokens(std::mem::take(&mut self.tokens));
        server::Shared::new(self, origin, state)
    }
}

/// The listener's address; `127.0.0.1:0` in the unheard-of case that the
/// system cannot say (then give [`DevProvider::with_origin`]).
fn listening_address(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().unwrap_or_else(|error| {
        tracing::warn!(%error, "development provider: cannot read the listening address");
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

/// `http://ADDR`, with a loopback address for an unspecified one
/// (`0.0.0.0` cannot be browsed to).
fn origin_of(mut addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("http://{addr}")
}

/// A running provider: its address, what it received, and its faults.
/// Dropping it stops the server.
pub struct DevProviderHandle {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
    task: JoinHandle<()>,
}

impl fmt::Debug for DevProviderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevProviderHandle")
            .field("origin", &self.shared.origin)
            .finish_non_exhaustive()
    }
}

impl DevProviderHandle {
    /// The address the provider listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (or the [`DevProvider::with_origin`] value):
    /// the `iss` the provider sends.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// The authorization endpoint's URL.
    pub fn authorize_url(&self) -> String {
        format!("{}/authorize", self.origin())
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.origin())
    }

    /// The userinfo endpoint's URL.
    pub fn userinfo_url(&self) -> String {
        format!("{}/userinfo", self.origin())
    }

    /// Every request received so far, oldest first (the last 10,000 of
    /// them).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorded(|_| true)
    }

    /// The requests received so far whose path is `path` (e.g. `"/token"`).
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.shared.recorded(|r| r.path == path)
    }

    /// Changes how `POST /token` answers from the next request on.
    pub fn set_token_fault(&self, fault: TokenFault) {
        *lock(&self.shared.token_fault) = fault;
    }

    /// Changes how `POST /token` encodes its answers.
    pub fn set_token_style(&self, style: TokenStyle) {
        *lock(&self.shared.token_style) = style;
    }

    /// Changes how id_tokens come out.
    pub fn set_id_token_fault(&self, fault: IdTokenFault) {
        *lock(&self.shared.id_token_fault) = fault;
    }

    /// Changes how `client_id` must authenticate.
    pub fn set_client_auth(&self, client_id: &str, auth: DevClientAuth) {
        lock(&self.shared.client_auth).insert(client_id.to_owned(), auth);
    }

    /// Replaces the signing keys by new ones: the JWKS holds only those.
    pub fn rotate_keys(&self) -> Result<(), crate::keys::KeyError> {
        *lock(&self.shared.keys) = Some(Arc::new(crate::keys::KeySet::generate()?));
        Ok(())
    }

    /// Adds `claims` (a JSON object) to what id_tokens and `/oidc/userinfo`
    /// say of the user `uuid`.
    pub fn set_claims(&self, uuid: &str, claims: serde_json::Value) {
        lock(&self.shared.claims).insert(uuid.to_owned(), claims);
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.origin())
    }

    /// Changes how `GET /userinfo` answers from the next request on.
    pub fn set_userinfo_fault(&self, fault: UserinfoFault) {
        *lock(&self.shared.userinfo_fault) = fault;
    }

    /// Stops the server and waits until it has closed its listener and its
    /// connections.
    pub async fn stop(mut self) {
        self.task.abort();
        // A cancelled task reports `JoinError::Cancelled`: nothing to report.
        let _ = (&mut self.task).await;
    }
}

impl Drop for DevProviderHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Finds the pending request's id in a login form, for clients without a
/// browser: the value of `<input type="hidden" name="request" value="…">`.
pub fn login_request_id(form_html: &str) -> Option<&str> {
    let start = form_html.find(html::REQUEST_FIELD_PREFIX)? + html::REQUEST_FIELD_PREFIX.len();
    let len = form_html[start..].find('"')?;
    Some(&form_html[start..start + len])
}

/// Locks `mutex`, going on if a thread panicked while holding it: every value
/// behind our locks is valid between statements.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
