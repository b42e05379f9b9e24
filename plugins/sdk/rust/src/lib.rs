//! Rust SDK for Waypass profile mappers.
//!
//! A mapper is a WebAssembly component that turns an OAuth2 access token into
//! the user's profile (the `waypass:mapper/mapper` world in `wit/mapper.wit`).
//! This crate hides the bindings: implement [`Mapper`], call
//! [`export_mapper!`], and build for `wasm32-wasip2` as a `cdylib`.
//!
//! # Example
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "my-mapper"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! waypass-mapper = { path = "../../sdk/rust" }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```no_run
//! use waypass_mapper::{Context, Error, Mapper, Profile, ProfileBuilder, export_mapper, http};
//!
//! struct MyMapper;
//!
//! impl Mapper for MyMapper {
//!     fn fetch_user_profile(access_token: String, ctx: Context) -> Result<Profile, Error> {
//!         let url = ctx.require_setting("userinfo_url")?;
//!         let user = http::get_json(url, &access_token)?;
//!         let id = user["sub"]
//!             .as_str()
//!             .ok_or_else(|| Error::InvalidProfile("no `sub` in userinfo".into()))?;
//!         waypass_mapper::log::debug(format!("found user {id}"));
//!         Ok(ProfileBuilder::new(id)
//!             .email(user["email"].as_str())
//!             .name(user["name"].as_str())
//!             .build())
//!     }
//! }
//!
//! export_mapper!(MyMapper);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the component
//! is `target/wasm32-wasip2/release/my_mapper.wasm`.
#![warn(missing_docs)]

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "mapper",
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        export_macro_name: "__export_mapper_impl",
        default_bindings_module: "waypass_mapper::bindings",
    });
}

pub mod http;
pub mod log;
mod profile;

/// What a mapper implements: one function turning an access token into a
/// [`Profile`]. Register the implementing type with [`export_mapper!`].
pub use bindings::Guest as Mapper;
/// Everything the mapper knows about the login: connection name, tokens and
/// settings (see [`Context::setting`]).
pub use bindings::waypass::mapper::types::Context;
/// Why a mapper could not produce a profile.
pub use bindings::waypass::mapper::types::Error;
/// The user's profile; build one with [`ProfileBuilder`].
pub use bindings::waypass::mapper::types::Profile;
/// The provider's token endpoint response.
pub use bindings::waypass::mapper::types::Tokens;
pub use profile::{OptionalText, ProfileBuilder};
/// The `serde_json` crate, re-exported so mappers need not depend on it.
pub use serde_json;

/// Exports a type implementing [`Mapper`] as the component's
/// `fetch-user-profile`. Use it once, at the crate root of a `cdylib`.
#[macro_export]
macro_rules! export_mapper {
    ($ty:ident) => {
        $crate::__export_mapper_impl!($ty with_types_in $crate::bindings);
    };
}

impl Context {
    /// The value of the setting `key`, if the connection has one.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the setting `key`, or `Error::Other("missing setting `key`")`.
    pub fn require_setting(&self, key: &str) -> Result<&str, Error> {
        self.setting(key)
            .ok_or_else(|| Error::Other(format!("missing setting `{key}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let ctx = Context {
            connection: "c".into(),
            tokens: Tokens {
                access_token: "t".into(),
                token_type: None,
                id_token: None,
                refresh_token: None,
                expires_in: None,
                scope: None,
                raw: "{}".into(),
            },
            settings: vec![("userinfo_url".into(), "https://x.test".into())],
        };
        assert_eq!(ctx.setting("userinfo_url"), Some("https://x.test"));
        assert_eq!(ctx.setting("nope"), None);
        assert_eq!(
            ctx.require_setting("nope"),
            Err(Error::Other("missing setting `nope`".into()))
        );
    }
}
