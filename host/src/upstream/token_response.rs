//! Token responses as providers really send them (RFC 6749 §5.1, §5.2, and
//! what GitHub, Slack and older Facebook APIs do instead).
//!
//! - The body is JSON, or `application/x-www-form-urlencoded` (GitHub
//!   without an `Accept: application/json` it honours, older Facebook).
//! - `token_type` may be missing or in any case (`bearer`): RFC 6749 §5.1
//!   names it case-insensitive. Any other type (DPoP, MAC) is refused: §7.1
//!   says a client must not use a token whose type it does not understand.
//! - `expires_in` may be a number or a string of digits.
//! - An error may come inside a `200` (GitHub: `{"error":"bad_verification_code"}`).
//! - Every other field is kept in the raw response the mapper gets.

use serde::Deserialize;

use super::ExchangeError;
use crate::mapper::TokenSet;

/// The fields Waypass reads of a token response; the others stay in `raw`.
#[derive(Debug, Default, Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default, deserialize_with = "number_or_digits")]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    /// RFC 6749 §5.2, also inside a `200`.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// `3600` or `"3600"`; anything else (a negative number, `"soon"`) reads as
/// absent rather than failing the login: the lifetime is advisory.
fn number_or_digits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// How the body is encoded, from its `Content-Type` and, when that says
/// nothing useful, its first character.
fn is_form(content_type: Option<&str>, body: &str) -> bool {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/x-www-form-urlencoded") => true,
        Some(t) if t == "application/json" || t.ends_with("+json") => false,
        // `text/plain`, `text/html` or nothing (GitHub's older answers):
        // JSON starts with `{`, a form with a name.
        _ => !body.trim_start().starts_with('{'),
    }
}

/// Reads a token endpoint's answer (`status`, `Content-Type`, body) into
/// the token set handed to the mapper, or the provider's refusal.
pub fn parse(
    status: u16,
    content_type: Option<&str>,
    body: &str,
) -> Result<TokenSet, ExchangeError> {
    let form = is_form(content_type, body);
    // `raw` is always a JSON object, so mappers read one format: a form
    // body becomes an object of its (string) values.
    let (parsed, raw): (Option<TokenResponse>, String) = if form {
        let object: serde_json::Map<String, serde_json::Value> =
            url::form_urlencoded::parse(body.as_bytes())
                .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
                .collect();
        let value = serde_json::Value::Object(object);
        (
            serde_json::from_value(value.clone()).ok(),
            value.to_string(),
        )
    } else {
        (serde_json::from_str(body).ok(), body.to_owned())
    };
    if let Some(error) = parsed.as_ref().and_then(|p| p.error.clone()) {
        // An error object, with any status: a provider's `200` with
        // `error` is a refusal, not a token.
        return Err(ExchangeError::Refused {
            error,
            description: parsed.and_then(|p| p.error_description),
        });
    }
    if !(200..300).contains(&status) {
        return Err(ExchangeError::Status { status });
    }
    let Some(response) = parsed else {
        return Err(ExchangeError::BadResponse(if form {
            "the answer is neither JSON nor a form".into()
        } else {
            "the answer is not a JSON object".into()
        }));
    };
    let access_token = response
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ExchangeError::BadResponse("it has no access_token".into()))?;
    if let Some(kind) = &response.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(ExchangeError::BadResponse(format!(
            "its token_type `{kind}` is not Bearer (RFC 6749 §7.1: a client must not use a token type it does not understand)"
        )));
    }
    Ok(TokenSet {
        access_token,
        token_type: response.token_type,
        id_token: response.id_token.filter(|t| !t.is_empty()),
        refresh_token: response.refresh_token.filter(|t| !t.is_empty()),
        expires_in: response.expires_in,
        scope: response.scope,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json; charset=utf-8");
    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[test]
    fn a_form_encoded_answer_is_read_and_handed_on_as_a_json_object() {
        let tokens = parse(
            200,
            FORM,
            "access_token=gho_16C7e42F292c6912E7710c838347Ae178B4a&scope=repo%2Cgist&token_type=bearer",
        )
        .expect("tokens");
        assert_eq!(
            tokens.access_token,
            "gho_16C7e42F292c6912E7710c838347Ae178B4a"
        );
        assert_eq!(tokens.scope.as_deref(), Some("repo,gist"));
        let raw: serde_json::Value = serde_json::from_str(&tokens.raw).expect("raw is JSON");
        assert_eq!(raw["token_type"], "bearer");
    }

    #[test]
    fn a_form_without_a_content_type_is_recognised_by_its_shape() {
        let tokens = parse(200, None, "access_token=a&token_type=bearer").expect("tokens");
        assert_eq!(tokens.access_token, "a");
        let tokens = parse(200, Some("text/plain"), r#"{"access_token":"b"}"#).expect("tokens");
        assert_eq!(tokens.access_token, "b");
    }

    #[test]
    fn a_missing_or_lower_case_token_type_is_accepted_and_another_type_refused() {
        assert!(parse(200, JSON, r#"{"access_token":"a"}"#).is_ok());
        assert!(parse(200, JSON, r#"{"access_token":"a","token_type":"bearer"}"#).is_ok());
        let err = parse(200, JSON, r#"{"access_token":"a","token_type":"DPoP"}"#).unwrap_err();
        assert!(err.to_string().contains("`DPoP` is not Bearer"), "{err}");
    }

    #[test]
    fn expires_in_may_be_a_string_and_nonsense_there_reads_as_absent() {
        let t = parse(200, JSON, r#"{"access_token":"a","expires_in":"3600"}"#).expect("tokens");
        assert_eq!(t.expires_in, Some(3600));
        let t = parse(200, FORM, "access_token=a&expires_in=60").expect("tokens");
        assert_eq!(t.expires_in, Some(60));
        let t = parse(200, JSON, r#"{"access_token":"a","expires_in":"soon"}"#).expect("tokens");
        assert_eq!(t.expires_in, None);
        let t = parse(200, JSON, r#"{"access_token":"a","expires_in":-5}"#).expect("tokens");
        assert_eq!(t.expires_in, None);
    }

    #[test]
    fn an_error_inside_a_200_is_the_providers_refusal_in_either_encoding() {
        let err = parse(
            200,
            JSON,
            r#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired."}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            ExchangeError::Refused {
                error: "bad_verification_code".into(),
                description: Some("The code passed is incorrect or expired.".into()),
            }
        );
        let err = parse(200, FORM, "error=bad_verification_code").unwrap_err();
        assert!(
            matches!(err, ExchangeError::Refused { error, .. } if error == "bad_verification_code")
        );
    }

    #[test]
    fn extra_fields_stay_in_the_raw_response() {
        let body = r#"{"access_token":"a","token_type":"Bearer","x_team":{"id":"T1"},"refresh_token_expires_in":99}"#;
        let t = parse(200, JSON, body).expect("tokens");
        assert_eq!(t.raw, body);
    }

    #[test]
    fn an_error_status_without_an_error_object_names_the_status() {
        assert_eq!(
            parse(502, Some("text/html"), "<html>bad gateway</html>").unwrap_err(),
            ExchangeError::Status { status: 502 }
        );
        assert_eq!(
            parse(400, JSON, r#"{"error":"invalid_grant"}"#).unwrap_err(),
            ExchangeError::Refused {
                error: "invalid_grant".into(),
                description: None
            }
        );
    }

    #[test]
    fn an_answer_that_is_no_object_or_has_no_token_is_not_usable() {
        for (ct, body) in [
            (JSON, "[1]"),
            (JSON, "<html>"),
            (JSON, r#"{"token_type":"Bearer"}"#),
            (JSON, r#"{"access_token":""}"#),
            (FORM, "scope=x"),
        ] {
            assert!(
                matches!(parse(200, ct, body), Err(ExchangeError::BadResponse(_))),
                "{body}"
            );
        }
    }
}
