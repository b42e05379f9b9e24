//! A mapper configured entirely by settings: GET the userinfo URL and pick the
//! profile's fields out of the JSON answer with JSON pointers (RFC 6901).

use waypass_mapper::http;
use waypass_mapper::serde_json::{Map, Value};
use waypass_mapper::{Context, Error, Mapper, Profile, ProfileBuilder, export_mapper};

struct Declarative;

/// The pointer for `field`: its setting, else `default`; an empty setting
/// turns the field off.
fn pointer<'a>(ctx: &'a Context, field: &str, default: &'a str) -> Option<&'a str> {
    Some(ctx.setting(field).unwrap_or(default)).filter(|p| !p.is_empty())
}

/// The scalar at `field`'s pointer as text (strings as they are, numbers and
/// booleans in JSON form); absent, null or structured values give `None`.
fn text(doc: &Value, ctx: &Context, field: &str, default: &str) -> Option<String> {
    match doc.pointer(pointer(ctx, field, default)?)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `email_verified` as a boolean or the string `"true"`/`"false"`.
fn flag(doc: &Value, ctx: &Context) -> Option<bool> {
    match doc.pointer(pointer(ctx, "email_verified", "/email_verified")?)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The `extra` setting, `key=/pointer,key=/pointer`: each pointer's value
/// (when present) under its key.
fn extra(doc: &Value, spec: &str) -> Result<Map<String, Value>, Error> {
    let mut out = Map::new();
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, ptr) = pair
            .split_once('=')
            .map(|(k, p)| (k.trim(), p.trim()))
            .filter(|(k, p)| !k.is_empty() && (p.is_empty() || p.starts_with('/')))
            .ok_or_else(|| {
                Error::Other(format!("setting `extra`: `{pair}` is not `key=/pointer`"))
            })?;
        if let Some(value) = doc.pointer(ptr) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    Ok(out)
}

impl Mapper for Declarative {
    fn fetch_user_profile(access_token: String, ctx: Context) -> Result<Profile, Error> {
        let doc = http::get_json(ctx.require_setting("userinfo_url")?, &access_token)?;

        let id_pointer = ctx.setting("user_id").unwrap_or("/sub");
        let user_id = match doc.pointer(id_pointer) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(Error::InvalidProfile(format!(
                    "no user id at `{id_pointer}`"
                )));
            }
        };

        Ok(ProfileBuilder::new(user_id)
            .email(text(&doc, &ctx, "email", "/email"))
            .email_verified(flag(&doc, &ctx))
            .name(text(&doc, &ctx, "name", "/name"))
            .given_name(text(&doc, &ctx, "given_name", "/given_name"))
            .family_name(text(&doc, &ctx, "family_name", "/family_name"))
            .nickname(text(&doc, &ctx, "nickname", "/nickname"))
            .picture(text(&doc, &ctx, "picture", "/picture"))
            .extra(Value::Object(extra(
                &doc,
                ctx.setting("extra").unwrap_or(""),
            )?))
            .build())
    }
}

export_mapper!(Declarative);

#[cfg(test)]
mod tests {
    use super::*;
    use waypass_mapper::serde_json::json;

    #[test]
    fn extra_pairs() {
        let doc = json!({"org": {"id": 7, "a/b": true}, "roles": ["x"]});
        let map = extra(
            &doc,
            " org = /org/id, roles=/roles,flag=/org/a~1b, gone=/nope,",
        )
        .unwrap();
        assert_eq!(
            Value::Object(map),
            json!({"org": 7, "roles": ["x"], "flag": true})
        );
        assert!(extra(&doc, "org").is_err());
        assert!(extra(&doc, "org=id").is_err());
    }
}
