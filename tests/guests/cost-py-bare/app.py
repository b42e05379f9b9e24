"""The floor of a Python mapper's call, for the call bench
(`tests/benches/languages.rs`): componentize-py's generated bindings alone,
no SDK, no request; answers a constant profile."""

import wit_world
from wit_world.imports import types


class WitWorld(wit_world.WitWorld):
    def fetch_user_profile(self, access_token: str, ctx: types.Context) -> types.Profile:
        return types.Profile(
            user_id="constant",
            email=None,
            email_verified=None,
            name=None,
            given_name=None,
            family_name=None,
            nickname=None,
            picture=None,
            extra=None,
        )
