//! A post-login Action that does what its secrets say, for the host's
//! tests (the world is `wit/action/action.wit`):
//!
//! - `claim` = `NAME=JSON`: sets the claim on the id_token and the access
//!   token; it also always tries to set `sub` (a restricted claim).
//! - `deny_domain` = `DOMAIN`: denies users whose email is at `DOMAIN`.
//! - `metadata` = `KEY=JSON`: sets an `app_metadata` property.
//! - `order` = `LABEL`: appends `LABEL` to `app_metadata.order` as the
//!   event shows it, and sets the claim `https://waypass.test/order` to
//!   the result (so two bound probes show the order they ran in).
//! - `check_url` = `URL`: asks `URL` through the host's `http`; the login
//!   goes on only if it answers 200 with `allow` in the body.
//! - `mode` = `loop` | `memory` | `fail`: spins forever, allocates without
//!   end, or answers its `error`.
//!
//! Every answer that goes on sets the claim `https://waypass.test/probe` to
//! the package's name: `action-probe-two` builds this same source as
//! another component, so a test can tell two versions apart.

wit_bindgen::generate!({
    path: ["../../../wit", "../../../wit/action"],
    world: "waypass:action/post-login@0.1.0",
    generate_all,
});

use waypass::mapper::http::{self, Method, Request as HttpRequest};

struct Probe;

fn secret<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event
        .secrets
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn property(pair: &str) -> Property {
    let (name, value) = pair.split_once('=').unwrap_or((pair, "null"));
    Property {
        name: name.into(),
        value: value.into(),
    }
}

impl Guest for Probe {
    fn on_execute_post_login(event: Event) -> Result<Outcome, Error> {
        match secret(&event, "mode") {
            Some("loop") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Some("memory") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Some("fail") => return Err(Error::Other("failing on purpose".into())),
            _ => {}
        }
        if let Some(domain) = secret(&event, "deny_domain")
            && event
                .user
                .email
                .as_deref()
                .is_some_and(|e| e.ends_with(&format!("@{domain}")))
        {
            return Ok(Outcome::Deny(format!("users of {domain} may not log in")));
        }
        if let Some(url) = secret(&event, "check_url") {
            let answer = http::send(&HttpRequest {
                method: Method::Get,
                url: url.into(),
                headers: vec![],
                body: None,
            })
            .map_err(|e| Error::Other(format!("the check service cannot be reached: {e:?}")))?;
            if answer.status != 200 || !String::from_utf8_lossy(&answer.body).contains("allow") {
                return Ok(Outcome::Deny("the check service said no".into()));
            }
        }
        let mut changes = Changes {
            id_token_claims: vec![],
            access_token_claims: vec![],
            app_metadata: vec![],
            user_metadata: vec![],
            add_scopes: vec![],
            remove_scopes: vec![],
        };
        changes.id_token_claims.push(Property {
            name: "https://waypass.test/probe".into(),
            value: format!("\"{}\"", env!("CARGO_PKG_NAME")),
        });
        if let Some(claim) = secret(&event, "claim") {
            changes.id_token_claims.push(property(claim));
            changes.access_token_claims.push(property(claim));
            changes
                .id_token_claims
                .push(property("sub=\"someone-else\""));
        }
        if let Some(pair) = secret(&event, "metadata") {
            changes.app_metadata.push(property(pair));
        }
        if let Some(label) = secret(&event, "order") {
            let app: serde_json::Value =
                serde_json::from_str(&event.user.app_metadata).unwrap_or_default();
            let mut order = app["order"].as_array().cloned().unwrap_or_default();
            order.push(label.into());
            let order = serde_json::Value::Array(order).to_string();
            changes.app_metadata.push(Property {
                name: "order".into(),
                value: order.clone(),
            });
            changes.id_token_claims.push(Property {
                name: "https://waypass.test/order".into(),
                value: order,
            });
        }
        Ok(Outcome::Proceed(changes))
    }
}

export!(Probe);
