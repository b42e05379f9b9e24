"""The SDK's share of a Python mapper's call, for the call bench
(`tests/benches/languages.rs`): the SDK's export, a setting read and
`profile`, no request; answers a constant profile."""

from waypass_mapper import Context, Profile, export, profile, require_setting


def fetch_user_profile(access_token: str, ctx: Context) -> Profile:
    require_setting(ctx, "userinfo_url")
    return profile("constant", email="ada@example.com")


WitWorld = export(fetch_user_profile)
