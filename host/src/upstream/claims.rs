//! The built-in claims mapper: a profile from the provider's verified
//! id_token claims, its userinfo, or both (as Kratos' `claims_source` and
//! Dex's `claimMapping` / `userIDKey`), with no component to write. It is
//! what a connection with an `issuer` and neither `mapper` nor `scripts`
//! runs.
//!
//! A claim is named by its name (`email`, `https://acme.test/roles`) or, if
//! it starts with `/`, by a JSON pointer (RFC 6901) into the claims, for
//! nested ones (`/realm_access/roles`).

use serde_json::{Map, Value};

use crate::mapper::{MAX_USER_ID_BYTES, Profile};
use crate::model::ClaimsOptions;

/// Most groups kept from a provider: a token with thousands (Azure AD
/// overage) would bloat every id_token the app gets.
pub const MAX_GROUPS: usize = 200;
/// Longest group name kept.
pub const MAX_GROUP_BYTES: usize = 256;

/// The profile fields a mapping may name, with the claim each reads by
/// default (OpenID Connect Core §5.1).
pub const FIELDS: [(&str, &str); 10] = [
    ("email", "email"),
    ("email_verified", "email_verified"),
    ("name", "name"),
    ("given_name", "given_name"),
    ("family_name", "family_name"),
    ("nickname", "nickname"),
    ("picture", "picture"),
    ("username", "preferred_username"),
    ("phone_number", "phone_number"),
    ("phone_verified", "phone_number_verified"),
];

/// Why no profile could be made of the claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("the provider's claims have no user id at `{0}`")]
    NoUserId(String),
    #[error("the provider's user id is over {MAX_USER_ID_BYTES} bytes")]
    UserIdTooLong,
}

/// Finds a claim by name or JSON pointer.
pub fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(pointer) = name.strip_prefix('/') {
        let mut parts = pointer.split('/');
        let first = parts.next()?.replace("~1", "/").replace("~0", "~");
        let rest: String = parts.map(|p| format!("/{p}")).collect();
        let top = claims.get(&first)?;
        if rest.is_empty() {
            Some(top)
        } else {
            top.pointer(&rest)
        }
    } else {
        claims.get(name)
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `true`/`false`, or their strings (Cognito sends `"true"`).
fn flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// The profile the claims describe under `options`.
pub fn profile(
    claims: &Map<String, Value>,
    options: &ClaimsOptions,
) -> Result<Profile, ClaimsError> {
    let user_id_claim = options.user_id_claim.as_deref().unwrap_or("sub");
    let user_id = lookup(claims, user_id_claim)
        .and_then(text)
        .ok_or_else(|| ClaimsError::NoUserId(user_id_claim.to_owned()))?;
    if user_id.len() > MAX_USER_ID_BYTES {
        return Err(ClaimsError::UserIdTooLong);
    }
    let claim_of = |field: &str, default: &str| -> Option<&Value> {
        let name = options
            .claim_mapping
            .get(field)
            .map(String::as_str)
            .unwrap_or(default);
        lookup(claims, name)
    };
    let mut profile = Profile {
        user_id,
        email: None,
        email_verified: None,
        name: None,
        given_name: None,
        family_name: None,
        nickname: None,
        picture: None,
        extra: Map::new(),
    };
    for (field, default) in FIELDS {
        let Some(value) = claim_of(field, default) else {
            continue;
        };
        match field {
            "email" => profile.email = text(value),
            "email_verified" => profile.email_verified = flag(value),
            "name" => profile.name = text(value),
            "given_name" => profile.given_name = text(value),
            "family_name" => profile.family_name = text(value),
            "nickname" => profile.nickname = text(value),
            "picture" => profile.picture = text(value),
            "phone_verified" => {
                if let Some(b) = flag(value) {
                    profile.extra.insert(field.into(), b.into());
                }
            }
            _ => {
                if let Some(t) = text(value) {
                    profile.extra.insert(field.into(), t.into());
                }
            }
        }
    }
    // Other mapped names (not profile fields) land in the profile's extra
    // attributes, as the mapper's own would.
    for (field, name) in &options.claim_mapping {
        if FIELDS.iter().any(|(f, _)| f == field) || field == "groups" {
            continue;
        }
        if let Some(value) = lookup(claims, name) {
            profile.extra.insert(field.clone(), value.clone());
        }
    }
    let groups_claim = options
        .groups_claim
        .as_deref()
        .or_else(|| options.claim_mapping.get("groups").map(String::as_str))
        .unwrap_or("groups");
    if let Some(groups) = lookup(claims, groups_claim).map(groups_of) {
        profile.extra.insert("groups".into(), groups.into());
    }
    Ok(profile)
}

/// A list of group names from an array of strings or one string; other
/// values skipped, bounded by [`MAX_GROUPS`] and [`MAX_GROUP_BYTES`].
fn groups_of(value: &Value) -> Vec<Value> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        v @ Value::String(_) => vec![v],
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|v| v.as_str())
        .filter(|s| !s.is_empty() && s.len() <= MAX_GROUP_BYTES)
        .take(MAX_GROUPS)
        .map(|s| Value::String(s.to_owned()))
        .collect()
}

/// The claims of `userinfo` layered over those of the id_token (both
/// verified or fetched over TLS from the provider): for `both`, userinfo
/// wins where both have a claim, as it is the fresher answer.
pub fn merge(id_token: &Map<String, Value>, userinfo: &Map<String, Value>) -> Map<String, Value> {
    let mut merged = id_token.clone();
    for (k, v) in userinfo {
        merged.insert(k.clone(), v.clone());
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Map<String, Value> {
        match serde_json::json!({
            "sub": "248289761001", "email": "Jane@Example.com", "email_verified": "true",
            "name": "Jane Doe", "preferred_username": "j.doe",
            "realm_access": {"roles": ["admin", "user", 7]},
            "https://acme.test/tenant": "acme", "oid": 42
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn standard_claims_fill_the_profile_by_default() {
        let p = profile(&claims(), &ClaimsOptions::default()).expect("profile");
        assert_eq!(p.user_id, "248289761001");
        assert_eq!(p.email.as_deref(), Some("Jane@Example.com"));
        assert_eq!(p.email_verified, Some(true));
        assert_eq!(p.extra["username"], "j.doe");
        assert!(
            !p.extra.contains_key("groups"),
            "no groups claim, no groups"
        );
    }

    #[test]
    fn pointers_reach_nested_claims_and_names_may_hold_slashes() {
        let options = ClaimsOptions {
            user_id_claim: Some("oid".into()),
            groups_claim: Some("/realm_access/roles".into()),
            claim_mapping: [("tenant".to_owned(), "https://acme.test/tenant".to_owned())].into(),
            ..ClaimsOptions::default()
        };
        let p = profile(&claims(), &options).expect("profile");
        assert_eq!(p.user_id, "42", "a numeric id reads as its digits");
        assert_eq!(p.extra["groups"], serde_json::json!(["admin", "user"]));
        assert_eq!(p.extra["tenant"], "acme");
    }

    #[test]
    fn a_missing_user_id_is_a_clear_error() {
        let options = ClaimsOptions {
            user_id_claim: Some("/nope/id".into()),
            ..ClaimsOptions::default()
        };
        assert_eq!(
            profile(&claims(), &options),
            Err(ClaimsError::NoUserId("/nope/id".into()))
        );
    }

    #[test]
    fn groups_are_bounded() {
        let many: Vec<String> = (0..MAX_GROUPS + 5).map(|i| format!("g{i}")).collect();
        let mut c = claims();
        c.insert("groups".into(), serde_json::json!(many));
        let p = profile(&c, &ClaimsOptions::default()).expect("profile");
        assert_eq!(p.extra["groups"].as_array().map(Vec::len), Some(MAX_GROUPS));
    }
}
