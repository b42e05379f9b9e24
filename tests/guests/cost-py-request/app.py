"""The request's share of a Python mapper's call, for the call bench
(`tests/benches/languages.rs`): what `cost-py-constant` does plus the
userinfo request through the host, its body left unread."""

from waypass_mapper import Context, Profile, export, http, profile, provider_error
from waypass_mapper import require_setting


def fetch_user_profile(access_token: str, ctx: Context) -> Profile:
    url = require_setting(ctx, "userinfo_url")
    resp = http.send(http.get(url, bearer_token=access_token))
    if resp.status != 200:
        raise provider_error(http.snippet(resp.body))
    return profile("constant", email="ada@example.com")


WitWorld = export(fetch_user_profile)
