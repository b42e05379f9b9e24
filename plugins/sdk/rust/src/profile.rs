use crate::Profile;
use serde_json::{Map, Value};

/// A value for an optional text field of [`ProfileBuilder`]: `&str`,
/// `String`, or an `Option` of either (`None` leaves the field empty).
pub trait OptionalText {
    /// The text, if any.
    fn into_text(self) -> Option<String>;
}

impl OptionalText for &str {
    fn into_text(self) -> Option<String> {
        Some(self.to_owned())
    }
}

impl OptionalText for String {
    fn into_text(self) -> Option<String> {
        Some(self)
    }
}

impl OptionalText for &String {
    fn into_text(self) -> Option<String> {
        Some(self.clone())
    }
}

impl<T: Into<String>> OptionalText for Option<T> {
    fn into_text(self) -> Option<String> {
        self.map(Into::into)
    }
}

/// Builds a [`Profile`] field by field.
///
/// ```
/// use waypass_mapper::{ProfileBuilder, serde_json::json};
///
/// let profile = ProfileBuilder::new("42")
///     .email("ada@example.com")
///     .email_verified(true)
///     .name(None::<&str>)
///     .extra(json!({"team": "engines"}))
///     .build();
/// assert_eq!(profile.user_id, "42");
/// assert_eq!(profile.extra.as_deref(), Some(r#"{"team":"engines"}"#));
/// ```
#[derive(Debug, Clone)]
pub struct ProfileBuilder {
    profile: Profile,
    extra: Map<String, Value>,
}

impl ProfileBuilder {
    /// Starts a profile for the provider's stable user id (must not be empty).
    pub fn new(user_id: impl Into<String>) -> Self {
        Self {
            profile: Profile {
                user_id: user_id.into(),
                email: None,
                email_verified: None,
                name: None,
                given_name: None,
                family_name: None,
                nickname: None,
                picture: None,
                extra: None,
            },
            extra: Map::new(),
        }
    }

    /// Sets the email address.
    pub fn email(mut self, email: impl OptionalText) -> Self {
        self.profile.email = email.into_text();
        self
    }

    /// Sets whether the provider verified the email address.
    pub fn email_verified(mut self, verified: impl Into<Option<bool>>) -> Self {
        self.profile.email_verified = verified.into();
        self
    }

    /// Sets the full name.
    pub fn name(mut self, name: impl OptionalText) -> Self {
        self.profile.name = name.into_text();
        self
    }

    /// Sets the given (first) name.
    pub fn given_name(mut self, given_name: impl OptionalText) -> Self {
        self.profile.given_name = given_name.into_text();
        self
    }

    /// Sets the family (last) name.
    pub fn family_name(mut self, family_name: impl OptionalText) -> Self {
        self.profile.family_name = family_name.into_text();
        self
    }

    /// Sets the casual name or handle.
    pub fn nickname(mut self, nickname: impl OptionalText) -> Self {
        self.profile.nickname = nickname.into_text();
        self
    }

    /// Sets the URL of a profile picture.
    pub fn picture(mut self, picture: impl OptionalText) -> Self {
        self.profile.picture = picture.into_text();
        self
    }

    /// Merges the members of the JSON object `extra` into the profile's other
    /// attributes (a value that is not an object is ignored).
    pub fn extra(mut self, extra: Value) -> Self {
        if let Value::Object(map) = extra {
            self.extra.extend(map);
        }
        self
    }

    /// Sets one attribute of the profile's other attributes.
    pub fn extra_field(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    /// The profile; `extra` is the JSON text of the attributes, or empty when
    /// there are none.
    pub fn build(self) -> Profile {
        let mut profile = self.profile;
        if !self.extra.is_empty() {
            profile.extra = Some(Value::Object(self.extra).to_string());
        }
        profile
    }
}
