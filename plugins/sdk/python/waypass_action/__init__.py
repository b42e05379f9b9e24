"""Python SDK for Waypass post-login Actions.

An Action is a WebAssembly component of the ``waypass:action/post-login``
world (``wit/action/action.wit``). This package sits on the bindings
componentize-py generates for that world (the ``wit_world`` module): write a
handler that reads like an Auth0 post-login Action, export it, and build the
directory with ``waypass action build DIR``.

Example ``app.py``::

    from waypass_action import export

    def on_execute_post_login(event, api):
        if (event.user.email or "").endswith("@blocked.example"):
            api.access.deny("this domain may not log in")
            return
        roles = event.user.app_metadata.get("roles", [])
        api.id_token.set_custom_claim("https://example.com/roles", roles)

    WitWorld = export(on_execute_post_login)

The ``event`` has the world's fields, in snake case as Auth0's
(``event.user.user_id``, ``event.client.client_id``, ``event.request.ip``),
with ``event.user.app_metadata``, ``user_metadata`` and ``profile`` parsed to
dicts and ``event.secrets`` a dict. The ``api`` records what the handler asks
for (``api.id_token.set_custom_claim``, ``api.access_token.set_custom_claim``,
``add_scope``, ``remove_scope``, ``api.user.set_app_metadata``,
``set_user_metadata``, ``api.access.deny``); nothing is applied until every
bound Action has answered, and a denied login changes nothing.

Any exception escaping the handler fails the login with ``server_error``
naming the Action (the world's ``error``, with the exception's text); it is
never skipped. ``waypass_action.http`` sends requests through the host under
the Action's egress allow-list; ``waypass_action.log`` writes log lines.
"""

import dataclasses
import json
from types import SimpleNamespace
from typing import Any, Callable, List, Optional

import wit_world
from componentize_py_types import Err

from . import http, log
from ._errors import ActionError

__all__ = ["ActionError", "Api", "auth0_event", "export", "http", "log"]

# Fields of the event holding the text of a JSON object, parsed for the handler.
_JSON_FIELDS = ("profile", "app_metadata", "user_metadata")


def auth0_event(value: Any, name: Optional[str] = None) -> Any:
    """The world's event as Auth0 shapes it: records as attribute namespaces,
    ``profile``, ``app_metadata`` and ``user_metadata`` parsed (``{}`` if they
    are not JSON), ``secrets`` a dict. Fields the world gains later come
    through as well."""
    if name in _JSON_FIELDS and isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    if name == "secrets" and isinstance(value, list):
        return {k: v for k, v in value}
    if isinstance(value, list):
        return [auth0_event(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return SimpleNamespace(
            **{
                field.name: auth0_event(getattr(value, field.name), field.name)
                for field in dataclasses.fields(value)
            }
        )
    return value


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ActionError(f"not a JSON value: {e}") from None


class _Claims:
    def __init__(self, claims: List[wit_world.Property]) -> None:
        self._claims = claims

    def set_custom_claim(self, name: str, value: Any) -> None:
        """Adds the claim ``name`` with ``value`` (anything JSON can hold)."""
        self._claims.append(wit_world.Property(name=str(name), value=_json_text(value)))


class _AccessToken(_Claims):
    def __init__(self, changes: wit_world.Changes) -> None:
        super().__init__(changes.access_token_claims)
        self._changes = changes

    def add_scope(self, scope: str) -> None:
        """Adds ``scope`` to those the app will be granted."""
        self._changes.add_scopes.append(str(scope))

    def remove_scope(self, scope: str) -> None:
        """Removes ``scope`` from those the app will be granted (not ``openid``)."""
        self._changes.remove_scopes.append(str(scope))


class _User:
    def __init__(self, changes: wit_world.Changes) -> None:
        self._changes = changes

    def set_app_metadata(self, name: str, value: Any) -> None:
        """Sets the top-level ``app_metadata`` property ``name``; ``None`` removes it."""
        self._changes.app_metadata.append(wit_world.Property(name=str(name), value=_json_text(value)))

    def set_user_metadata(self, name: str, value: Any) -> None:
        """Sets the top-level ``user_metadata`` property ``name``; ``None`` removes it."""
        self._changes.user_metadata.append(wit_world.Property(name=str(name), value=_json_text(value)))


class _Access:
    def __init__(self) -> None:
        self.denied: Optional[str] = None

    def deny(self, reason: str) -> None:
        """Ends the login: the app gets ``access_denied`` with ``reason``."""
        if self.denied is None:
            self.denied = str(reason)


class Api:
    """What a handler may ask for; it records the asks as the world's ``outcome``."""

    def __init__(self) -> None:
        self.changes = wit_world.Changes(
            id_token_claims=[],
            access_token_claims=[],
            app_metadata=[],
            user_metadata=[],
            add_scopes=[],
            remove_scopes=[],
        )
        self.id_token = _Claims(self.changes.id_token_claims)
        self.access_token = _AccessToken(self.changes)
        self.user = _User(self.changes)
        self.access = _Access()

    def outcome(self) -> wit_world.Outcome:
        """Deny if the handler denied (a deny wins over any change), else proceed."""
        if self.access.denied is not None:
            return wit_world.Outcome_Deny(self.access.denied)
        return wit_world.Outcome_Proceed(self.changes)


def export(handler: Callable[[Any, Api], None]) -> type:
    """The class componentize-py exports, made from ``handler(event, api)``.

    Bind it to ``WitWorld`` in ``app.py``: ``WitWorld = export(on_execute_post_login)``.
    """

    def method(self: Any, event: wit_world.Event) -> wit_world.Outcome:
        api = Api()
        try:
            handler(auth0_event(event), api)
        except ActionError as e:
            raise Err(wit_world.Error_Other(e.message)) from None
        except Exception as e:  # noqa: BLE001 - every failure is the Action's error
            raise Err(wit_world.Error_Other(f"{type(e).__name__}: {e}")) from None
        return api.outcome()

    method.__name__ = "on_execute_post_login"
    method.__doc__ = handler.__doc__
    return type("WitWorld", (wit_world.WitWorld,), {"on_execute_post_login": method})
