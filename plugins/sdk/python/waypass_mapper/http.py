"""Outbound HTTP through the host, under the connection's egress policy.

:func:`get_json` covers the common case (a userinfo endpoint); :func:`request`
and :func:`send` give full control. Redirects are never followed by the host.

Errors follow the Rust SDK: 401 and 403 raise ``unauthorized`` with the body,
any other non-2xx status ``provider("<status>: <body>")``, a body that is not
JSON ``provider``, and a host error ``other("http <kind>[: <detail>]")``
(``http timeout``, ``http denied: <reason>``, ...). Quoted bodies are cut to
:data:`SNIPPET_LIMIT` bytes.
"""

import json
import json.scanner
from typing import Any, Callable, Iterable, Optional, Tuple

from componentize_py_types import Err
from wit_world.imports import http as _wit

from ._errors import other_error, provider_error, unauthorized

__all__ = [
    "MAX_JSON_DEPTH",
    "SNIPPET_LIMIT",
    "HttpError",
    "Method",
    "Request",
    "Response",
    "as_mapper_error",
    "describe",
    "get",
    "get_json",
    "header",
    "is_success",
    "parse_json",
    "request",
    "response_json",
    "send",
    "send_json",
    "snippet",
    "text",
]

SNIPPET_LIMIT = 512
"""How many bytes of a response body error messages quote."""

Method = _wit.Method
"""Request methods a mapper may use (``Method.GET``, ``Method.POST``, ...)."""

Request = _wit.Request
"""One outbound request; build one with :func:`request` or :func:`get`."""

Response = _wit.Response
"""The provider's whole answer: ``status``, ``headers`` (names in lower case), ``body`` (bytes)."""

HttpError = _wit.Error
"""Why the host did not answer: ``Error_Denied``, ``Error_Timeout``, ... of ``wit_world.imports.http``."""

MAX_JSON_DEPTH = 127
"""How deep arrays and objects may nest in a body :func:`parse_json` accepts
(``serde_json``'s limit, so Python and Rust mappers refuse the same bodies)."""

_KINDS = {
    _wit.Error_Denied: "denied",
    _wit.Error_Timeout: "timeout",
    _wit.Error_TooLarge: "too-large",
    _wit.Error_InvalidRequest: "invalid-request",
    _wit.Error_Transport: "transport",
    _wit.Error_BudgetExhausted: "budget-exhausted",
}


def request(
    method: Method,
    url: str,
    *,
    bearer_token: Optional[str] = None,
    headers: Iterable[Tuple[str, str]] = (),
    body: Optional[bytes] = None,
) -> Request:
    """A request with ``method`` for ``url``.

    ``bearer_token`` adds ``Authorization: Bearer <token>`` first, then come
    ``headers`` in order; ``body`` is bytes (or text, sent as UTF-8).
    """
    all_headers = [] if bearer_token is None else [("Authorization", f"Bearer {bearer_token}")]
    all_headers.extend((name, value) for name, value in headers)
    if isinstance(body, str):
        body = body.encode("utf-8")
    return Request(method=method, url=url, headers=all_headers, body=body)


def get(
    url: str, *, bearer_token: Optional[str] = None, headers: Iterable[Tuple[str, str]] = ()
) -> Request:
    """A GET request for ``url``; see :func:`request`."""
    return request(Method.GET, url, bearer_token=bearer_token, headers=headers)


def send(req: Request) -> Response:
    """Sends ``req`` through the host and returns the whole response, whatever its status.

    A host error raises ``other("http <kind>[: <detail>]")``; to handle one
    yourself, call ``wit_world.imports.http.send``, which raises
    ``Err(HttpError)``.
    """
    try:
        return _wit.send(req)
    except Err as e:
        raise as_mapper_error(e.value) from None


def send_json(req: Request) -> Any:
    """Sends ``req`` and returns its body as JSON; see :func:`response_json`."""
    return response_json(send(req))


def get_json(url: str, bearer_token: str) -> Any:
    """GETs ``url`` with ``Authorization: Bearer <bearer_token>`` and ``Accept: application/json``
    and returns the body as JSON.

    401 and 403 raise ``unauthorized`` with the body, any other non-2xx status
    ``provider("<status>: <body>")``, a body that is not JSON ``provider``, a
    host error ``other("http <kind>[: <detail>]")``.
    """
    return send_json(
        get(url, bearer_token=bearer_token, headers=[("Accept", "application/json")])
    )


def response_json(resp: Response) -> Any:
    """The body of ``resp`` as JSON, if the status is 2xx.

    401 and 403 raise ``unauthorized`` with the body, other statuses
    ``provider("<status>: <body>")``, a body that is not JSON
    ``provider("response is not JSON (<why>): <body>")``.
    """
    if resp.status in (401, 403):
        raise unauthorized(snippet(resp.body))
    if not is_success(resp):
        raise provider_error(f"{resp.status}: {snippet(resp.body)}")
    try:
        return parse_json(resp.body)
    except ValueError as e:
        raise provider_error(f"response is not JSON ({e}): {snippet(resp.body)}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _strict_decoder() -> json.JSONDecoder:
    """A decoder that refuses ``NaN`` and ``Infinity``."""
    return json.JSONDecoder(parse_constant=_refuse_constant)


# Made once, when the module is imported (and snapshotted with it), not per call.
_DECODER = _strict_decoder()


def parse_json(body: bytes) -> Any:
    """``body`` parsed as JSON, as strictly as the Rust SDK: UTF-8 without a
    byte order mark, no ``NaN`` or ``Infinity``, nested at most
    :data:`MAX_JSON_DEPTH` deep.

    Raises ``ValueError`` for anything else.
    """
    decoded = body.decode("utf-8")
    # CPython's C scanner recurses on the C stack, which WebAssembly cannot
    # measure: a body nested thousands deep overflows it and the call traps.
    # With few brackets a body cannot nest deep; otherwise the pure-Python
    # scanner, counting depth, in a decoder of its own.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH:
        decoder = _strict_decoder()
        _limit_depth(decoder)
    else:
        decoder = _DECODER
    try:
        return decoder.decode(decoded)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _limit_depth(decoder: json.JSONDecoder) -> None:
    depth = 0

    def limited(parse: Callable[..., Any]) -> Callable[..., Any]:
        def parse_nested(*args: Any) -> Any:
            nonlocal depth
            depth += 1
            try:
                if depth > MAX_JSON_DEPTH:
                    raise ValueError(f"nested more than {MAX_JSON_DEPTH} deep")
                return parse(*args)
            finally:
                depth -= 1

        return parse_nested

    decoder.parse_object = limited(decoder.parse_object)
    decoder.parse_array = limited(decoder.parse_array)
    decoder.scan_once = json.scanner.py_make_scanner(decoder)


def header(resp: Response, name: str) -> Optional[str]:
    """The first value of the header ``name`` in ``resp`` (case-insensitive), or ``None``."""
    wanted = name.lower()
    for key, value in resp.headers:
        if key.lower() == wanted:
            return value
    return None


def is_success(resp: Response) -> bool:
    """Whether the status of ``resp`` is 2xx."""
    return 200 <= resp.status < 300


def text(resp: Response) -> str:
    """The body of ``resp`` as text, invalid UTF-8 replaced."""
    return resp.body.decode("utf-8", errors="replace")


def snippet(body: bytes) -> str:
    """``body`` as text (invalid UTF-8 replaced) cut to at most :data:`SNIPPET_LIMIT`
    bytes on a character boundary, with ``…`` appended when cut."""
    decoded = body.decode("utf-8", errors="replace")
    encoded = decoded.encode("utf-8")
    if len(encoded) <= SNIPPET_LIMIT:
        return decoded
    return encoded[:SNIPPET_LIMIT].decode("utf-8", errors="ignore") + "…"


def describe(error: HttpError) -> str:
    """The host error's kind, followed by ``: <detail>`` when it carries one:
    ``denied: host not allowed``, ``timeout``."""
    kind = _KINDS.get(type(error), "unknown")
    detail = getattr(error, "value", None)
    return kind if detail is None else f"{kind}: {detail}"


def as_mapper_error(error: HttpError) -> Err:
    """The mapper error for a host error: ``other("http <kind>[: <detail>]")``."""
    return other_error(f"http {describe(error)}")
