"""The mapper's errors, as the ``componentize_py_types.Err`` the world's result expects."""

from componentize_py_types import Err
from wit_world.imports import types as _types


def unauthorized(message: str) -> Err:
    """The error for "the provider rejected the access token": ``raise unauthorized(body)``.

    Waypass answers the app with ``access_denied``.
    """
    return Err(_types.Error_Unauthorized(message))


def provider_error(message: str) -> Err:
    """The error for "the provider answered something unexpected" (status, body)."""
    return Err(_types.Error_Provider(message))


def invalid_profile(message: str) -> Err:
    """The error for "the provider's answer lacks what a profile needs" (no user id, say)."""
    return Err(_types.Error_InvalidProfile(message))


def other_error(message: str) -> Err:
    """The error for anything else: ``raise other_error("...")``."""
    return Err(_types.Error_Other(message))
