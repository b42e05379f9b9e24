"""A post-login Action in Python: ask an API whether the user may log in.

POSTs ``{"user_id": ..., "email": ..., "client_id": ...}`` to the URL in the
secret ``DECISION_URL`` (its host must be on the Action's egress allow-list)
and expects ``{"allow": true|false, "reason": "...", "roles": [...]}``: a
refusal denies the login with the API's reason, an approval puts the roles
into the id_token and the access token under a namespaced claim.
"""

from waypass_action import ActionError, export, http, log

ROLES_CLAIM = "https://example.com/roles"


def on_execute_post_login(event, api):
    url = event.secrets.get("DECISION_URL")
    if not url:
        raise ActionError("the secret DECISION_URL is not set")
    answer = http.post_json(
        url,
        {
            "user_id": event.user.user_id,
            "email": event.user.email,
            "client_id": event.client.client_id,
        },
        bearer_token=event.secrets.get("DECISION_TOKEN"),
    )
    if not isinstance(answer, dict):
        raise ActionError("the decision API did not answer a JSON object")
    if answer.get("allow") is not True:
        api.access.deny(str(answer.get("reason") or "not allowed"))
        return
    roles = answer.get("roles") or []
    log.info(f"{event.user.user_id} may log in with roles {roles}")
    api.id_token.set_custom_claim(ROLES_CLAIM, roles)
    api.access_token.set_custom_claim(ROLES_CLAIM, roles)


WitWorld = export(on_execute_post_login)
