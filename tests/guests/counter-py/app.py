"""Keeps state in the places a Python mapper could: a module-level variable,
a module attribute of another module (``sys``), and a cache dictionary. Each
call adds one to each and answers their values; a fresh instance per login
answers user id "1" and ``extra`` {"global": 1, "cached": 1} every time.
"""

import sys

from waypass_mapper import Context, Profile, export, profile

calls = 0
cache: dict = {}


def fetch_user_profile(access_token: str, ctx: Context) -> Profile:
    global calls
    calls += 1
    sys.waypass_counter = getattr(sys, "waypass_counter", 0) + 1
    cache["calls"] = cache.get("calls", 0) + 1
    return profile(
        str(calls),
        extra={"global": sys.waypass_counter, "cached": cache["calls"]},
    )


WitWorld = export(fetch_user_profile)
