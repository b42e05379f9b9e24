//! The quickstart's demo app: a confidential OpenID Connect client with a
//! "Log in" button and a page showing the user's profile and id_token claims.
//! It uses PKCE (RFC 7636), as Waypass requires of every app by default.

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use url::Url;

use crate::broker::oauth::{Params, with_query};
use crate::broker::pages::escape;
use crate::secret::{Random, Secret, SystemRandomTokens, ct_eq, pkce_challenge};
use crate::upstream::Upstream;

const STATE_COOKIE: &str = "qs_login";

pub struct DemoApp {
    issuer: String,
    authorize: Url,
    token_url: Url,
    userinfo_url: Url,
    redirect_uri: String,
    client_id: String,
    secret: Secret,
    random: SystemRandomTokens,
    http: Upstream,
}

impl DemoApp {
    pub fn new(
        issuer: &str,
        app_url: &str,
        client_id: &str,
        secret: Secret,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            issuer: issuer.to_owned(),
            authorize: Url::parse(&format!("{issuer}/authorize"))?,
            token_url: Url::parse(&format!("{issuer}/oauth/token"))?,
            userinfo_url: Url::parse(&format!("{issuer}/userinfo"))?,
            redirect_uri: format!("{app_url}/callback"),
            client_id: client_id.to_owned(),
            secret,
            random: SystemRandomTokens::default(),
            http: Upstream::default(),
        })
    }

    pub async fn serve(self, listener: TcpListener) {
        let app = Arc::new(self);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let app = app.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(app.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/" => self.home(),
            "/callback" => {
                let cookies = req
                    .headers()
                    .get(header::COOKIE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let query = req.uri().query().unwrap_or("").to_owned();
                self.callback(&query, &cookies).await
            }
            _ => page(StatusCode::NOT_FOUND, "Not found", "<p>Nothing here.</p>"),
        }
    }

    /// The start page: a login link carrying a fresh state, nonce and PKCE
    /// challenge; the state, nonce and verifier are remembered in a cookie
    /// for the way back.
    fn home(&self) -> Response<Full<Bytes>> {
        let (state, nonce, verifier) = (
            self.random.token(),
            self.random.token(),
            self.random.token(),
        );
        let challenge = pkce_challenge(&verifier);
        let login = with_query(
            &self.authorize,
            &[
                ("response_type", "code"),
                ("client_id", &self.client_id),
                ("redirect_uri", &self.redirect_uri),
                ("scope", "openid profile email"),
                ("state", &state),
                ("nonce", &nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        );
        let body = format!(
            "<p>This demo app logs you in through Waypass at <code>{}</code>.</p>\
             <p><a class=\"btn\" href=\"{}\">Log in</a></p>\
             <p>The development provider's account is <b>ada</b> / <b>lovelace</b>.</p>",
            escape(&self.issuer),
            escape(&login)
        );
        let mut resp = page(StatusCode::OK, "Waypass quickstart", &body);
        let cookie = format!(
            "{STATE_COOKIE}={state}.{nonce}.{verifier}; Path=/; HttpOnly; SameSite=Lax; Max-Age=600"
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        resp
    }

    async fn callback(&self, query: &str, cookies: &str) -> Response<Full<Bytes>> {
        match self.finish(query, cookies).await {
            Ok(body) => page(StatusCode::OK, "Logged in", &body),
            Err(message) => page(
                StatusCode::BAD_REQUEST,
                "Login failed",
                &format!(
                    "<p class=\"err\">{}</p><p><a href=\"/\">Try again</a></p>",
                    escape(&message)
                ),
            ),
        }
    }

    async fn finish(&self, query: &str, cookies: &str) -> Result<String, String> {
        let params = Params::parse(query).map_err(|e| e.description)?;
        let remembered = cookies
            .split(';')
            .find_map(|c| {
                c.trim()
                    .strip_prefix(&format!("{STATE_COOKIE}="))
                    .map(str::to_owned)
            })
            .ok_or("the login cookie is missing; start from the home page")?;
        let mut parts = remembered.split('.');
        let (Some(state), Some(nonce), Some(verifier)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("the login cookie is malformed".into());
        };
        if !params.get("state").is_some_and(|s| ct_eq(s, state)) {
            return Err("the state does not match this browser's login".into());
        }
        if let Some(error) = params.get("error") {
            return Err(format!(
                "{error}: {}",
                params.get("error_description").unwrap_or("")
            ));
        }
        let code = params.get("code").ok_or("no code in the answer")?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.redirect_uri),
                ("code_verifier", verifier),
            ])
            .finish();
        let mut headers = HeaderMap::new();
        let creds = STANDARD.encode(format!("{}:{}", self.client_id, self.secret.expose()));
        let basic = HeaderValue::from_str(&format!("Basic {creds}")).map_err(|e| e.to_string())?;
        headers.insert(header::AUTHORIZATION, basic);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let resp = self
            .http
            .send(Method::POST, &self.token_url, headers, Bytes::from(form))
            .await?;
        let tokens: serde_json::Value =
            serde_json::from_slice(&resp.body).map_err(|e| format!("token response: {e}"))?;
        if resp.status != 200 {
            return Err(format!("token endpoint answered {}: {tokens}", resp.status));
        }
        let id_token = tokens["id_token"].as_str().ok_or("no id_token")?;
        let claims = jwt_part(id_token, 1)?;
        if claims["nonce"] != nonce {
            return Err("the id_token's nonce does not match".into());
        }
        let access = tokens["access_token"].as_str().ok_or("no access_token")?;
        let mut headers = HeaderMap::new();
        let bearer =
            HeaderValue::from_str(&format!("Bearer {access}")).map_err(|e| e.to_string())?;
        headers.insert(header::AUTHORIZATION, bearer);
        let userinfo = self
            .http
            .send(Method::GET, &self.userinfo_url, headers, Bytes::new())
            .await?;
        let profile: serde_json::Value =
            serde_json::from_slice(&userinfo.body).map_err(|e| format!("userinfo: {e}"))?;
        let pretty =
            |v: &serde_json::Value| escape(&serde_json::to_string_pretty(v).unwrap_or_default());
        Ok(format!(
            "<p>Hello, <b>{}</b>.</p><h2>/userinfo</h2><pre>{}</pre>\
             <h2>id_token header</h2><pre>{}</pre><h2>id_token claims</h2><pre>{}</pre>\
             <p><a href=\"/\">Log in again</a></p>",
            escape(
                profile["email"]
                    .as_str()
                    .unwrap_or(profile["sub"].as_str().unwrap_or("?"))
            ),
            pretty(&profile),
            pretty(&jwt_part(id_token, 0)?),
            pretty(&claims),
        ))
    }
}

/// Decodes part `i` (0 header, 1 claims) of a compact JWS, for display.
fn jwt_part(jwt: &str, i: usize) -> Result<serde_json::Value, String> {
    let part = jwt.split('.').nth(i).ok_or("malformed id_token")?;
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

fn page(status: StatusCode, title: &str, body: &str) -> Response<Full<Bytes>> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:3rem auto;padding:0 1rem}}\
         pre{{background:#f4f5f7;padding:1rem;overflow:auto}}.btn{{padding:.6rem 1.2rem;background:#234;color:#fff;\
         border-radius:6px;text-decoration:none}}.err{{color:#a00}}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    let mut resp = Response::new(Full::new(Bytes::from(html)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}
