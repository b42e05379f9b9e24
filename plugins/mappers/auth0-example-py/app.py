"""A faithful port of Auth0's example `fetchUserProfile` script: GET the
userinfo URL with the access token, expect 200 and a JSON body, and read
`account.uuid` and `account.email`.

The same behaviour as the Rust `auth0-example`, line for line.
"""

from waypass_mapper import (
    Context,
    Profile,
    export,
    http,
    invalid_profile,
    profile,
    provider_error,
    require_setting,
    str_or_none,
)


def fetch_user_profile(access_token: str, ctx: Context) -> Profile:
    """Asks the provider's userinfo endpoint who holds `access_token`."""
    url = require_setting(ctx, "userinfo_url")
    # `if (err) return callback(err);`
    resp = http.send(http.get(url, bearer_token=access_token))
    # `if (resp.statusCode !== 200) return callback(new Error(body));`
    if resp.status != 200:
        raise provider_error(http.snippet(resp.body))
    # `try { JSON.parse(body) } catch (e) { return callback(new Error(body)); }`
    try:
        body = http.parse_json(resp.body)
    except ValueError:
        raise provider_error(http.snippet(resp.body)) from None
    account = body.get("account") if isinstance(body, dict) else None
    user_id = account.get("uuid") if isinstance(account, dict) else None
    if not isinstance(user_id, str) or not user_id:
        raise invalid_profile("`account.uuid` is missing or not a string")
    return profile(user_id, email=str_or_none(account.get("email")))


WitWorld = export(fetch_user_profile)
