"""The work `action-probe` does with the secrets `claim` and `metadata`, in
Python through the SDK, for the per-login figures of
`tests/benches/actions.rs`: one namespaced claim on both tokens and one
app_metadata property."""

from waypass_action import export


def on_execute_post_login(event, api):
    api.id_token.set_custom_claim("https://example.com/roles", ["admin"])
    api.access_token.set_custom_claim("https://example.com/roles", ["admin"])
    api.user.set_app_metadata("plan", "gold")


WitWorld = export(on_execute_post_login)
