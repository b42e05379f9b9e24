//! What a login writes of the provider's profile onto the user: Auth0's
//! `set_user_root_attributes` and `non_persistent_attrs`.

use crate::mapper::Profile;
use crate::model::{ConnectionOptions, RootAttributesSync};

/// The profile's root attributes kept in `extra` (the others are fields
/// of [`Profile`]): with those, Auth0's user root attributes that come
/// from a provider.
pub const EXTRA_ROOT_ATTRIBUTES: [&str; 3] = ["username", "phone_number", "phone_verified"];

/// Drops the attributes named by `names` from `profile`: a field of
/// [`Profile`] or a key of its `extra` (`user_id` cannot be named).
fn drop_attributes(profile: &mut Profile, names: &[String]) {
    for name in names {
        match name.as_str() {
            "email" => profile.email = None,
            "email_verified" => profile.email_verified = None,
            "name" => profile.name = None,
            "given_name" => profile.given_name = None,
            "family_name" => profile.family_name = None,
            "nickname" => profile.nickname = None,
            "picture" => profile.picture = None,
            other => {
                profile.extra.remove(other);
            }
        }
    }
}

/// The attributes of `fresh` that `non_persistent_attrs` names, alone in a
/// profile (its id left empty): what the login's tokens get of them.
/// `None` when the connection names none.
pub fn non_persistent_part(options: &ConnectionOptions, fresh: &Profile) -> Option<Profile> {
    if options.non_persistent_attrs.is_empty() {
        return None;
    }
    let mut part = Profile {
        user_id: String::new(),
        email: None,
        email_verified: None,
        name: None,
        given_name: None,
        family_name: None,
        nickname: None,
        picture: None,
        extra: serde_json::Map::new(),
    };
    for name in &options.non_persistent_attrs {
        match name.as_str() {
            "email" => part.email = fresh.email.clone(),
            "email_verified" => part.email_verified = fresh.email_verified,
            "name" => part.name = fresh.name.clone(),
            "given_name" => part.given_name = fresh.given_name.clone(),
            "family_name" => part.family_name = fresh.family_name.clone(),
            "nickname" => part.nickname = fresh.nickname.clone(),
            "picture" => part.picture = fresh.picture.clone(),
            other => {
                if let Some(v) = fresh.extra.get(other) {
                    part.extra.insert(other.to_owned(), v.clone());
                }
            }
        }
    }
    Some(part)
}

/// Copies every root attribute of `from` onto `to` (absent ones too).
fn copy_root_attributes(from: &Profile, to: &mut Profile) {
    to.email = from.email.clone();
    to.email_verified = from.email_verified;
    to.name = from.name.clone();
    to.given_name = from.given_name.clone();
    to.family_name = from.family_name.clone();
    to.nickname = from.nickname.clone();
    to.picture = from.picture.clone();
    for key in EXTRA_ROOT_ATTRIBUTES {
        match from.extra.get(key) {
            Some(v) => to.extra.insert(key.to_owned(), v.clone()),
            None => to.extra.remove(key),
        };
    }
}

/// The profile to store for a login that brought `fresh`, given the user's
/// `stored` profile (`None`: a first login). Non-persistent attributes are
/// never in it; root attributes follow `set_user_root_attributes`; other
/// attributes (groups, a mapper's own) follow the provider at every login.
pub fn profile_to_store(
    options: &ConnectionOptions,
    stored: Option<&Profile>,
    fresh: Profile,
) -> Profile {
    let mut profile = fresh;
    drop_attributes(&mut profile, &options.non_persistent_attrs);
    match (options.set_user_root_attributes, stored) {
        (RootAttributesSync::OnEachLogin, _) | (RootAttributesSync::OnFirstLogin, None) => {}
        (RootAttributesSync::OnFirstLogin | RootAttributesSync::NeverOnLogin, Some(stored)) => {
            copy_root_attributes(stored, &mut profile);
        }
        (RootAttributesSync::NeverOnLogin, None) => {
            let empty = Profile {
                user_id: String::new(),
                email: None,
                email_verified: None,
                name: None,
                given_name: None,
                family_name: None,
                nickname: None,
                picture: None,
                extra: serde_json::Map::new(),
            };
            copy_root_attributes(&empty, &mut profile);
        }
    }
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(email: &str, name: &str, groups: &[&str]) -> Profile {
        serde_json::from_value(serde_json::json!({
            "user_id": "u1", "email": email, "name": name,
            "extra": {"username": format!("{name}-login"), "groups": groups, "gender": "f"}
        }))
        .expect("profile")
    }

    fn options(sync: RootAttributesSync, non_persistent: &[&str]) -> ConnectionOptions {
        ConnectionOptions {
            set_user_root_attributes: sync,
            non_persistent_attrs: non_persistent.iter().map(|s| s.to_string()).collect(),
            ..ConnectionOptions::default()
        }
    }

    #[test]
    fn on_each_login_takes_the_providers_profile() {
        let o = options(RootAttributesSync::OnEachLogin, &[]);
        let stored = profile("old@a.test", "Old", &["g0"]);
        let p = profile_to_store(&o, Some(&stored), profile("new@a.test", "New", &["g1"]));
        assert_eq!(p, profile("new@a.test", "New", &["g1"]));
    }

    #[test]
    fn on_first_login_keeps_the_stored_root_attributes_and_follows_the_rest() {
        let o = options(RootAttributesSync::OnFirstLogin, &[]);
        let first = profile_to_store(&o, None, profile("a@a.test", "Ada", &["g0"]));
        assert_eq!(first, profile("a@a.test", "Ada", &["g0"]));
        let second = profile_to_store(&o, Some(&first), profile("b@a.test", "Bea", &["g1"]));
        assert_eq!(second.email.as_deref(), Some("a@a.test"));
        assert_eq!(second.name.as_deref(), Some("Ada"));
        assert_eq!(second.extra["username"], "Ada-login");
        assert_eq!(
            second.extra["groups"],
            serde_json::json!(["g1"]),
            "not a root attribute"
        );
    }

    #[test]
    fn never_on_login_sets_no_root_attribute_even_at_the_first_login() {
        let o = options(RootAttributesSync::NeverOnLogin, &[]);
        let first = profile_to_store(&o, None, profile("a@a.test", "Ada", &["g0"]));
        assert_eq!(
            (first.email.as_deref(), first.name.as_deref()),
            (None, None)
        );
        assert!(!first.extra.contains_key("username"));
        assert_eq!(first.extra["groups"], serde_json::json!(["g0"]));
        assert_eq!(first.user_id, "u1");
    }

    #[test]
    fn non_persistent_attributes_are_dropped_fields_and_extras_alike() {
        let o = options(RootAttributesSync::OnEachLogin, &["email", "gender"]);
        let p = profile_to_store(&o, None, profile("a@a.test", "Ada", &[]));
        assert_eq!(p.email, None);
        assert!(!p.extra.contains_key("gender"));
        assert_eq!(p.name.as_deref(), Some("Ada"));
    }
}
