//! GitHub profiles: `GET /user` for the account, then `GET /user/emails` for a
//! verified address (falling back to `/user`'s public email, unverified, when
//! the token lacks the `user:email` scope).

use waypass_mapper::http::{self, Request};
use waypass_mapper::serde_json::{Value, json};
use waypass_mapper::{Context, Error, Mapper, Profile, ProfileBuilder, export_mapper};

const DEFAULT_API_BASE: &str = "https://api.github.com";

struct GitHub;

fn request(url: String, token: &str) -> Request {
    Request::get(url)
        .bearer(token)
        .header("Accept", "application/vnd.github+json")
        .header("User-Agent", "waypass")
}

/// The primary verified address, else the first verified one.
fn verified_email(emails: &Value) -> Option<&str> {
    let emails = emails.as_array()?;
    let verified = |e: &&Value| e["verified"] == true && e["email"].is_string();
    emails
        .iter()
        .filter(verified)
        .find(|e| e["primary"] == true)
        .or_else(|| emails.iter().find(verified))
        .and_then(|e| e["email"].as_str())
}

impl Mapper for GitHub {
    fn fetch_user_profile(access_token: String, ctx: Context) -> Result<Profile, Error> {
        let base = ctx
            .setting("api_base")
            .unwrap_or(DEFAULT_API_BASE)
            .trim_end_matches('/');

        let user = http::send_json(&request(format!("{base}/user"), &access_token))?;
        let user_id = match &user["id"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) if !s.is_empty() => s.clone(),
            _ => return Err(Error::InvalidProfile("GitHub user has no `id`".into())),
        };

        let resp = http::send(&request(format!("{base}/user/emails"), &access_token))?;
        let emails = match resp.status {
            // The token lacks the `user:email` scope.
            403 | 404 => Value::Null,
            _ => resp.json()?,
        };
        let (email, verified) = match verified_email(&emails) {
            Some(email) => (Some(email), Some(true)),
            None => {
                let email = user["email"].as_str();
                (email, email.map(|_| false))
            }
        };

        Ok(ProfileBuilder::new(user_id)
            .email(email)
            .email_verified(verified)
            .nickname(user["login"].as_str())
            .name(user["name"].as_str())
            .picture(user["avatar_url"].as_str())
            .extra(json!({"login": user["login"], "html_url": user["html_url"]}))
            .build())
    }
}

export_mapper!(GitHub);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_primary_verified_then_first_verified() {
        let emails = json!([
            {"email": "a@x", "primary": false, "verified": false},
            {"email": "b@x", "primary": false, "verified": true},
            {"email": "c@x", "primary": true, "verified": true},
        ]);
        assert_eq!(verified_email(&emails), Some("c@x"));
        let emails = json!([
            {"email": "a@x", "primary": true, "verified": false},
            {"email": "b@x", "primary": false, "verified": true},
        ]);
        assert_eq!(verified_email(&emails), Some("b@x"));
        assert_eq!(
            verified_email(&json!([{"email": "a@x", "primary": true, "verified": false}])),
            None
        );
        assert_eq!(verified_email(&Value::Null), None);
    }
}
