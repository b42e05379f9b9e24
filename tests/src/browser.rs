//! A browser for end-to-end tests: keeps cookies, follows a login's
//! redirects through the broker and the development provider, and stops
//! before the app. Its own file, so that the tests of the installed binary
//! (`host/tests/installed.rs`) walk logins with it too.

use std::collections::HashMap;

use url::Url;
use waypass::dev_provider::{DEFAULT_PASSWORD, DEFAULT_USERNAME, login_request_id};

/// Where a browser's walk through a login stopped.
#[derive(Debug)]
pub struct Landing {
    pub status: u16,
    /// The redirect target, when the walk stopped at a redirect into the app.
    pub location: Option<Url>,
    pub body: String,
}

impl Landing {
    /// A query parameter of the redirect into the app.
    pub fn param(&self, name: &str) -> Option<String> {
        self.location
            .as_ref()?
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// A browser: cookies by name (this test world has one site per port) and
/// no automatic redirects.
pub struct Browser {
    pub http: reqwest::Client,
    pub cookies: HashMap<String, String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self {
            http: http_client(),
            cookies: HashMap::new(),
        }
    }
}

/// An HTTP client that never follows redirects (as OAuth clients must not).
pub fn http_client() -> reqwest::Client {
    reqwest::ClientBuilder::new()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

impl Browser {
    /// Sends a request with the cookie jar and keeps what it sets.
    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> (u16, Option<String>, String) {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = if cookie.is_empty() {
            req
        } else {
            req.header("cookie", cookie)
        };
        let resp = req.send().await.expect("request");
        for set in resp.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap_or_default();
            let Some((pair, attrs)) = set.split_once(';').or(Some((set, ""))) else {
                continue;
            };
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, location, resp.text().await.unwrap_or_default())
    }

    pub async fn get(&mut self, url: &str) -> (u16, Option<String>, String) {
        let req = self.http.get(url);
        self.send(req).await
    }

    /// Walks a login up to the provider's redirect back to the broker, as
    /// `ada`, and returns that callback URL without following it.
    pub async fn to_callback(&mut self, provider: &str, authorize_url: &str) -> String {
        let (_, to_provider, _) = self.get(authorize_url).await;
        let (_, _, form) = self
            .get(&to_provider.expect("a redirect to the provider"))
            .await;
        let request = login_request_id(&form)
            .expect("the provider's login form")
            .to_owned();
        let req = self.http.post(format!("{provider}/authorize")).form(&[
            ("request", request.as_str()),
            ("username", DEFAULT_USERNAME),
            ("password", DEFAULT_PASSWORD),
            ("action", "login"),
        ]);
        self.send(req)
            .await
            .1
            .expect("a redirect back to the broker")
    }

    /// Walks a login from an `/authorize` URL at the broker `issuer`: to
    /// `provider`, through its form as `ada` (or denying), back through the
    /// broker, and stops at the first redirect to a URL outside both (the
    /// app) or at a page.
    pub async fn login_at(
        &mut self,
        issuer: &str,
        provider: &str,
        authorize_url: &str,
        deny: bool,
    ) -> Landing {
        let mut url = authorize_url.to_owned();
        for _ in 0..10 {
            let (status, location, body) = self.get(&url).await;
            if status == 200 && url.starts_with(provider) {
                // The provider's login form.
                let Some(request) = login_request_id(&body) else {
                    return Landing {
                        status,
                        location: None,
                        body,
                    };
                };
                let form = [
                    ("request", request),
                    ("username", DEFAULT_USERNAME),
                    ("password", DEFAULT_PASSWORD),
                    ("action", if deny { "deny" } else { "login" }),
                ];
                let req = self.http.post(format!("{provider}/authorize")).form(&form);
                let (status, location, body) = self.send(req).await;
                match location {
                    Some(next) if status == 302 => {
                        url = next;
                        continue;
                    }
                    _ => {
                        return Landing {
                            status,
                            location: None,
                            body,
                        };
                    }
                }
            }
            match location {
                Some(next) if (300..400).contains(&status) => {
                    let inside = next.starts_with(issuer) || next.starts_with(provider);
                    if !inside {
                        return Landing {
                            status,
                            location: Url::parse(&next).ok(),
                            body,
                        };
                    }
                    url = next;
                }
                _ => {
                    return Landing {
                        status,
                        location: None,
                        body,
                    };
                }
            }
        }
        panic!("the login did not settle within 10 steps");
    }
}
