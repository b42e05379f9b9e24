//! A faithful port of Auth0's example `fetchUserProfile` script: GET the
//! userinfo URL with the access token, expect 200 and a JSON body, and read
//! `account.uuid` and `account.email`.

use waypass_mapper::http::{self, Request};
use waypass_mapper::serde_json::{self, Value};
use waypass_mapper::{Context, Error, Mapper, Profile, ProfileBuilder, export_mapper};

struct Auth0Example;

impl Mapper for Auth0Example {
    fn fetch_user_profile(access_token: String, ctx: Context) -> Result<Profile, Error> {
        let url = ctx.require_setting("userinfo_url")?;
        // `if (err) return callback(err);`
        let resp = http::send(&Request::get(url).bearer(&access_token))?;
        // `if (resp.statusCode !== 200) return callback(new Error(body));`
        if resp.status != 200 {
            return Err(Error::Provider(resp.snippet()));
        }
        // `try { JSON.parse(body) } catch (e) { return callback(new Error(body)); }`
        let body: Value =
            serde_json::from_slice(&resp.body).map_err(|_| Error::Provider(resp.snippet()))?;
        let account = &body["account"];
        let user_id = account["uuid"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                Error::InvalidProfile("`account.uuid` is missing or not a string".into())
            })?;
        Ok(ProfileBuilder::new(user_id)
            .email(account["email"].as_str())
            .build())
    }
}

export_mapper!(Auth0Example);
