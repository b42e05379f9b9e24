//! A development OAuth2 provider's userinfo endpoint, for the demo and tests.
//!
//! It answers `GET /userinfo` in the shape of Auth0's example script,
//! `{"account":{"uuid":…,"email":…}}`, for the bearer tokens it knows, and
//! `401` for any other. Runs on a listener the caller binds (port 0 in tests).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A user of the development provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevUser {
    pub uuid: String,
    pub email: String,
}

/// The provider's users, by the access token that names them.
#[derive(Debug, Default, Clone)]
pub struct DevProvider {
    users: HashMap<String, DevUser>,
}

impl DevProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `token` an access token for `user`.
    pub fn with_token(mut self, token: impl Into<String>, user: DevUser) -> Self {
        self.users.insert(token.into(), user);
        self
    }

    /// Serves on `listener` until the task is dropped.
    pub async fn serve(self, listener: TcpListener) {
        let provider = Arc::new(self);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let provider = provider.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let provider = provider.clone();
                    async move { Ok::<_, Infallible>(provider.handle(&req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    fn handle(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() != "/userinfo" {
            return respond(StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#.into());
        }
        let token = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match token.and_then(|t| self.users.get(t)) {
            Some(user) => respond(
                StatusCode::OK,
                serde_json::json!({"account": {"uuid": user.uuid, "email": user.email}})
                    .to_string(),
            ),
            None => respond(
                StatusCode::UNAUTHORIZED,
                r#"{"error":"invalid_token","error_description":"unknown access token"}"#.into(),
            ),
        }
    }
}

fn respond(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
