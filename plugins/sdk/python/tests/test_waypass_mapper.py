"""Tests of the Python SDK, on the host's Python, against real generated bindings.

The bindings for world `mapper` are generated into a temporary directory with
componentize-py: the one `waypass mapper build` installed (its venv under
`~/.cache/waypass/toolchains`), or `$COMPONENTIZE_PY`, or one on PATH. The
host's `http.send` and `log.log` are replaced by fakes.

    python3 -m unittest discover -s plugins/sdk/python/tests
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

SDK = Path(__file__).resolve().parents[1]
WIT = SDK.parents[2] / "wit"
VERSION = "0.25.1"


def componentize_py() -> str:
    """The componentize-py to generate bindings with."""
    if os.environ.get("COMPONENTIZE_PY"):
        return os.environ["COMPONENTIZE_PY"]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    bin_dir = "Scripts" if os.name == "nt" else "bin"
    installed = cache / "waypass" / "toolchains" / f"componentize-py-{VERSION}" / bin_dir
    found = shutil.which("componentize-py", path=str(installed)) or shutil.which(
        "componentize-py"
    )
    if not found:
        raise RuntimeError(
            "componentize-py not found: run `waypass mapper build` on a Python mapper once "
            "(it installs it), or set COMPONENTIZE_PY"
        )
    return found


_bindings = tempfile.TemporaryDirectory()
subprocess.run(
    [componentize_py(), "-d", str(WIT), "-w", "mapper", "bindings", _bindings.name],
    check=True,
    stdout=subprocess.DEVNULL,
)
sys.path[:0] = [_bindings.name, str(SDK)]

from componentize_py_types import Err  # noqa: E402
from wit_world.imports import http as wit_http  # noqa: E402
from wit_world.imports import log as wit_log  # noqa: E402
from wit_world.imports import types  # noqa: E402

import waypass_mapper  # noqa: E402
from waypass_mapper import http, log  # noqa: E402


def context(**settings: str) -> types.Context:
    tokens = types.Tokens(
        access_token="t",
        token_type=None,
        id_token=None,
        refresh_token=None,
        expires_in=None,
        scope=None,
        raw="{}",
    )
    return types.Context(connection="c", tokens=tokens, settings=list(settings.items()))


def response(status: int, body: bytes) -> wit_http.Response:
    return wit_http.Response(
        status=status, headers=[("content-type", "application/json")], body=body
    )


class FakeHost(unittest.TestCase):
    """Replaces the host's imports for each test; `self.sent` records requests."""

    def setUp(self) -> None:
        self.sent = []
        self.answer = response(200, b"{}")
        self.logged = []

        def send(req):
            self.sent.append(req)
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

        self.patch(wit_http, "send", send)
        self.patch(wit_log, "log", lambda level, message: self.logged.append((level, message)))

    def patch(self, module, name, value) -> None:
        original = getattr(module, name)
        setattr(module, name, value)
        self.addCleanup(setattr, module, name, original)

    def assertRaisesMapperError(self, kind, message, fn, *args):
        with self.assertRaises(Err) as raised:
            fn(*args)
        self.assertEqual(raised.exception.value, kind(message))


class Settings(unittest.TestCase):
    def test_a_setting_is_found_by_key(self):
        ctx = context(userinfo_url="https://x.test")
        self.assertEqual(waypass_mapper.setting(ctx, "userinfo_url"), "https://x.test")
        self.assertIsNone(waypass_mapper.setting(ctx, "nope"))

    def test_a_missing_required_setting_is_an_other_error(self):
        with self.assertRaises(Err) as raised:
            waypass_mapper.require_setting(context(), "nope")
        self.assertEqual(raised.exception.value, types.Error_Other("missing setting `nope`"))


class Profiles(unittest.TestCase):
    def test_a_profile_has_the_given_fields_and_extra_as_json_text(self):
        p = waypass_mapper.profile(
            "42", email="ada@example.com", email_verified=True, extra={"team": "engines"}
        )
        self.assertEqual(p.user_id, "42")
        self.assertEqual(p.email, "ada@example.com")
        self.assertIs(p.email_verified, True)
        self.assertIsNone(p.name)
        self.assertEqual(p.extra, '{"team":"engines"}')

    def test_empty_extra_is_left_out(self):
        self.assertIsNone(waypass_mapper.profile("42", extra={}).extra)

    def test_fields_of_the_wrong_type_are_refused(self):
        for kwargs in ({"email": 5}, {"email_verified": "yes"}, {"extra": [1]}):
            with self.subTest(kwargs), self.assertRaises(TypeError):
                waypass_mapper.profile("42", **kwargs)
        with self.assertRaises(TypeError):
            waypass_mapper.profile(42)

    def test_str_or_none_keeps_only_strings(self):
        self.assertEqual(waypass_mapper.str_or_none("a"), "a")
        self.assertIsNone(waypass_mapper.str_or_none(5))
        self.assertIsNone(waypass_mapper.str_or_none(None))


class Http(FakeHost):
    def test_get_json_sends_the_bearer_token_and_accept(self):
        self.answer = response(200, b'{"a": 1}')
        self.assertEqual(http.get_json("https://x.test/u", "tok"), {"a": 1})
        (req,) = self.sent
        self.assertEqual(req.method, wit_http.Method.GET)
        self.assertEqual(req.url, "https://x.test/u")
        self.assertEqual(
            req.headers, [("Authorization", "Bearer tok"), ("Accept", "application/json")]
        )
        self.assertIsNone(req.body)

    def test_401_and_403_are_unauthorized_with_the_body(self):
        for status in (401, 403):
            self.answer = response(status, b"bad token")
            self.assertRaisesMapperError(
                types.Error_Unauthorized, "bad token", http.get_json, "https://x.test", "t"
            )

    def test_other_statuses_are_provider_errors_with_status_and_body(self):
        self.answer = response(500, b"boom")
        self.assertRaisesMapperError(
            types.Error_Provider, "500: boom", http.get_json, "https://x.test", "t"
        )

    def test_a_body_that_is_not_json_is_a_provider_error(self):
        for body in (b"<html>", b"\xef\xbb\xbf{}", b'{"a": NaN}', b"{} x", b"\xff"):
            self.answer = response(200, body)
            with self.subTest(body), self.assertRaises(Err) as raised:
                http.get_json("https://x.test", "t")
            error = raised.exception.value
            self.assertIsInstance(error, types.Error_Provider)
            self.assertTrue(error.value.startswith("response is not JSON ("), error.value)

    def test_json_nested_deeper_than_serde_allows_is_refused(self):
        ok = b"[" * http.MAX_JSON_DEPTH + b"]" * http.MAX_JSON_DEPTH
        self.assertIsInstance(http.parse_json(ok), list)
        for depth in (http.MAX_JSON_DEPTH + 1, 100_000):
            with self.subTest(depth), self.assertRaises(ValueError):
                http.parse_json(b"[" * depth + b"]" * depth)
        wide = json.dumps({"a": [[1]] * 1000}).encode()
        self.assertEqual(len(http.parse_json(wide)["a"]), 1000)

    def test_host_errors_are_other_errors_naming_their_kind(self):
        for error, text in [
            (wit_http.Error_Denied("host not allowed"), "http denied: host not allowed"),
            (wit_http.Error_Timeout(), "http timeout"),
            (wit_http.Error_TooLarge(), "http too-large"),
            (wit_http.Error_InvalidRequest("bad url"), "http invalid-request: bad url"),
            (wit_http.Error_Transport("reset"), "http transport: reset"),
            (wit_http.Error_BudgetExhausted(), "http budget-exhausted"),
        ]:
            self.answer = Err(error)
            with self.subTest(text):
                self.assertRaisesMapperError(
                    types.Error_Other, text, http.get_json, "https://x.test", "t"
                )

    def test_snippets_are_cut_on_a_character_boundary(self):
        self.assertEqual(http.snippet(("é" * 400).encode()), "é" * 256 + "…")
        self.assertEqual(http.snippet(b"x" * 512), "x" * 512)
        self.assertEqual(http.snippet(b"short"), "short")
        self.assertEqual(http.snippet(b"\xff ok"), "\ufffd ok")

    def test_error_bodies_are_quoted_as_snippets(self):
        self.answer = response(502, b"x" * 2000)
        self.assertRaisesMapperError(
            types.Error_Provider, "502: " + "x" * 512 + "…", http.get_json, "https://x.test", "t"
        )

    def test_requests_take_headers_in_order_and_text_bodies_as_utf8(self):
        req = http.request(
            http.Method.POST, "https://x.test", bearer_token="t", headers=[("X-A", "1")], body="é"
        )
        self.assertEqual(req.headers, [("Authorization", "Bearer t"), ("X-A", "1")])
        self.assertEqual(req.body, "é".encode())

    def test_response_headers_are_found_case_insensitively(self):
        self.assertEqual(http.header(response(200, b""), "Content-Type"), "application/json")
        self.assertIsNone(http.header(response(200, b""), "etag"))


class Logs(FakeHost):
    def test_each_level_is_passed_to_the_host(self):
        log.trace("t")
        log.debug("d")
        log.info("i")
        log.warn("w")
        log.error("e")
        self.assertEqual(
            self.logged,
            [
                (wit_log.Level.TRACE, "t"),
                (wit_log.Level.DEBUG, "d"),
                (wit_log.Level.INFO, "i"),
                (wit_log.Level.WARN, "w"),
                (wit_log.Level.ERROR, "e"),
            ],
        )


class Export(FakeHost):
    def test_the_exported_class_calls_the_function(self):
        world = waypass_mapper.export(lambda token, ctx: waypass_mapper.profile(token))()
        self.assertEqual(world.fetch_user_profile("u1", context()).user_id, "u1")

    def test_mapper_errors_pass_through(self):
        def fetch(token, ctx):
            raise waypass_mapper.invalid_profile("no id")

        with self.assertRaises(Err) as raised:
            waypass_mapper.export(fetch)().fetch_user_profile("t", context())
        self.assertEqual(raised.exception.value, types.Error_InvalidProfile("no id"))

    def test_an_escaping_host_error_becomes_an_other_error(self):
        self.answer = Err(wit_http.Error_Timeout())

        def fetch(token, ctx):
            wit_http.send(http.get("https://x.test"))

        with self.assertRaises(Err) as raised:
            waypass_mapper.export(fetch)().fetch_user_profile("t", context())
        self.assertEqual(raised.exception.value, types.Error_Other("http timeout"))

    def test_returning_something_else_than_a_profile_is_a_type_error(self):
        with self.assertRaises(TypeError):
            waypass_mapper.export(lambda token, ctx: {"user_id": "x"})().fetch_user_profile(
                "t", context()
            )


class Auth0Example(FakeHost):
    """The example mapper, `plugins/mappers/auth0-example-py/app.py`."""

    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, str(SDK.parents[1] / "mappers" / "auth0-example-py"))
        import app

        cls.world = app.WitWorld()

    def fetch(self, body: bytes, status: int = 200):
        self.answer = response(status, body)
        return self.world.fetch_user_profile("tok", context(userinfo_url="https://x.test/u"))

    def test_the_account_becomes_the_profile(self):
        p = self.fetch(b'{"account":{"uuid":"u1","email":"e@x"}}')
        self.assertEqual((p.user_id, p.email), ("u1", "e@x"))
        (req,) = self.sent
        self.assertEqual(req.headers, [("Authorization", "Bearer tok")])

    def test_a_non_string_email_is_left_out(self):
        self.assertIsNone(self.fetch(b'{"account":{"uuid":"u1","email":5}}').email)

    def test_any_status_but_200_is_a_provider_error_carrying_exactly_the_body(self):
        for status in (201, 401, 500):
            with self.subTest(status):
                self.assertRaisesMapperError(
                    types.Error_Provider, "nope", self.fetch, b"nope", status
                )

    def test_a_body_that_is_not_json_is_a_provider_error_carrying_the_body(self):
        self.assertRaisesMapperError(types.Error_Provider, "<html>", self.fetch, b"<html>")

    def test_a_missing_or_non_string_uuid_is_an_invalid_profile(self):
        for body in (b"{}", b"[1]", b'{"account":{"uuid":7}}', b'{"account":{"uuid":""}}'):
            with self.subTest(body):
                self.assertRaisesMapperError(
                    types.Error_InvalidProfile,
                    "`account.uuid` is missing or not a string",
                    self.fetch,
                    body,
                )

    def test_without_the_userinfo_url_setting_nothing_is_sent(self):
        with self.assertRaises(Err) as raised:
            self.world.fetch_user_profile("tok", context())
        self.assertEqual(raised.exception.value, types.Error_Other("missing setting `userinfo_url`"))
        self.assertEqual(self.sent, [])


if __name__ == "__main__":
    unittest.main()
