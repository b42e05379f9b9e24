"""Python SDK for Waypass profile mappers.

A mapper is a WebAssembly component that turns an OAuth2 access token into
the user's profile (the ``waypass:mapper/mapper`` world in ``wit/mapper.wit``).
This package sits on the bindings componentize-py generates for that world
(the ``wit_world`` module): write a function, export it, and build the
directory with ``waypass mapper build DIR``.

Example ``app.py``::

    from waypass_mapper import Context, Profile, export, http, invalid_profile, log
    from waypass_mapper import profile, require_setting, str_or_none

    def fetch_user_profile(access_token: str, ctx: Context) -> Profile:
        url = require_setting(ctx, "userinfo_url")
        user = http.get_json(url, access_token)
        user_id = str_or_none(user.get("sub")) if isinstance(user, dict) else None
        if not user_id:
            raise invalid_profile("no `sub` in userinfo")
        log.debug(f"found user {user_id}")
        return profile(user_id, email=str_or_none(user.get("email")))

    WitWorld = export(fetch_user_profile)

Errors are raised, not returned: ``raise provider_error("...")`` and its
siblings build the ``componentize_py_types.Err`` the world's ``result``
expects. Any other exception escaping the function is a bug in the mapper:
the call traps and the traceback is kept in the call's log.

Layout: this module (types, errors, settings, ``profile``, ``export``),
``waypass_mapper.http`` (requests through the host), ``waypass_mapper.log``.
"""

import json
from typing import Any, Callable, Mapping, Optional

import wit_world
from componentize_py_types import Err
from wit_world.imports import types as _types

from . import http, log
from ._errors import invalid_profile, other_error, provider_error, unauthorized

__all__ = [
    "Context",
    "Err",
    "Profile",
    "Tokens",
    "export",
    "http",
    "invalid_profile",
    "log",
    "other_error",
    "profile",
    "provider_error",
    "require_setting",
    "setting",
    "str_or_none",
    "unauthorized",
]

Context = _types.Context
"""Everything the mapper knows about the login: connection, tokens, settings."""

Tokens = _types.Tokens
"""The provider's token endpoint response (``ctx.tokens``)."""

Profile = _types.Profile
"""The user's profile; build one with :func:`profile`."""


def setting(ctx: Context, key: str) -> Optional[str]:
    """The value of the connection's setting ``key``, or ``None``."""
    for name, value in ctx.settings:
        if name == key:
            return value
    return None


def require_setting(ctx: Context, key: str) -> str:
    """The value of the setting ``key``; raises ``other("missing setting `key`")`` without it."""
    value = setting(ctx, key)
    if value is None:
        raise other_error(f"missing setting `{key}`")
    return value


def str_or_none(value: Any) -> Optional[str]:
    """``value`` if it is a string, else ``None``: for optional fields of a JSON answer."""
    return value if isinstance(value, str) else None


def profile(
    user_id: str,
    *,
    email: Optional[str] = None,
    email_verified: Optional[bool] = None,
    name: Optional[str] = None,
    given_name: Optional[str] = None,
    family_name: Optional[str] = None,
    nickname: Optional[str] = None,
    picture: Optional[str] = None,
    extra: Optional[Mapping[str, Any]] = None,
) -> Profile:
    """The profile of the user the provider knows as ``user_id`` (must not be empty).

    Text fields take a string or ``None``; ``extra`` takes a mapping of any
    other attributes, sent as the text of one JSON object (left empty when the
    mapping is). A value of the wrong type raises ``TypeError``: it is a bug in
    the mapper, as it would be a compile error in Rust.
    """
    if not isinstance(user_id, str):
        raise TypeError(f"profile user_id must be a string, not {type(user_id).__name__}")
    fields = {
        "email": email,
        "name": name,
        "given_name": given_name,
        "family_name": family_name,
        "nickname": nickname,
        "picture": picture,
    }
    for field, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise TypeError(f"profile {field} must be a string or None, not {type(value).__name__}")
    if email_verified is not None and not isinstance(email_verified, bool):
        raise TypeError(
            f"profile email_verified must be a bool or None, not {type(email_verified).__name__}"
        )
    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError(f"profile extra must be a mapping or None, not {type(extra).__name__}")
    extra_json = (
        json.dumps(dict(extra), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        if extra
        else None
    )
    return Profile(user_id=user_id, email_verified=email_verified, extra=extra_json, **fields)


# Host HTTP errors, told apart from the mapper's own (`Err` carries either).
_HTTP_ERRORS = tuple(http._KINDS)


def export(fetch_user_profile: Callable[[str, Context], Profile]) -> type:
    """The class componentize-py exports, made from ``fetch_user_profile(access_token, ctx)``.

    Bind it to ``WitWorld`` in ``app.py``: ``WitWorld = export(fetch_user_profile)``.
    A host HTTP error that escapes the function (from calling the generated
    ``wit_world.imports.http.send`` directly) becomes ``other("http <kind>")``,
    as in the Rust SDK; a return value that is not a :data:`Profile` raises
    ``TypeError``, which names the mistake in the call's log.
    """

    def method(self: Any, access_token: str, ctx: Context) -> Profile:
        try:
            result = fetch_user_profile(access_token, ctx)
        except Err as e:
            if isinstance(e.value, _HTTP_ERRORS):
                raise http.as_mapper_error(e.value) from None
            raise
        if not isinstance(result, Profile):
            raise TypeError(
                "fetch_user_profile must return a Profile (waypass_mapper.profile(...)), "
                f"not {type(result).__name__}"
            )
        return result

    method.__name__ = "fetch_user_profile"
    method.__doc__ = fetch_user_profile.__doc__
    return type("WitWorld", (wit_world.WitWorld,), {"fetch_user_profile": method})
