"""Outbound HTTP through the host, under the Action's egress allow-list.

:func:`get_json` and :func:`post_json` cover calling an API to decide;
:func:`send` gives full control. Redirects are never followed by the host.
A host error (``denied``, ``timeout``, ...), a non-2xx status or a body that
is not JSON raises :class:`~waypass_action.ActionError`, which fails the
login naming the Action unless the handler catches it.
"""

import json
from typing import Any, Iterable, Optional, Tuple

from componentize_py_types import Err
from wit_world.imports import http as _wit

from ._errors import ActionError

__all__ = ["SNIPPET_LIMIT", "Method", "Request", "Response", "get_json", "post_json", "send"]

SNIPPET_LIMIT = 512
"""How many bytes of a response body error messages quote."""

Method = _wit.Method
"""Request methods (``Method.GET``, ``Method.POST``, ...)."""

Request = _wit.Request
"""One outbound request: ``method``, ``url``, ``headers`` (name/value pairs), ``body`` (bytes or ``None``)."""

Response = _wit.Response
"""The whole answer: ``status``, ``headers`` (names in lower case), ``body`` (bytes)."""

_KINDS = {
    _wit.Error_Denied: "denied",
    _wit.Error_Timeout: "timeout",
    _wit.Error_TooLarge: "too-large",
    _wit.Error_InvalidRequest: "invalid-request",
    _wit.Error_Transport: "transport",
    _wit.Error_BudgetExhausted: "budget-exhausted",
}


def _snippet(body: bytes) -> str:
    encoded = body.decode("utf-8", errors="replace").encode("utf-8")
    if len(encoded) <= SNIPPET_LIMIT:
        return encoded.decode("utf-8")
    return encoded[:SNIPPET_LIMIT].decode("utf-8", errors="ignore") + "…"


def send(req: Request) -> Response:
    """Sends ``req`` through the host and returns the whole response, whatever its status.

    A host error raises ``ActionError("http <kind>[: <detail>]")``.
    """
    try:
        return _wit.send(req)
    except Err as e:
        kind = _KINDS.get(type(e.value), "unknown")
        detail = getattr(e.value, "value", None)
        raise ActionError(f"http {kind}" + ("" if detail is None else f": {detail}")) from None


def _json_of(resp: Response) -> Any:
    if not 200 <= resp.status < 300:
        raise ActionError(f"{resp.status}: {_snippet(resp.body)}")
    try:
        return json.loads(resp.body.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise ActionError(f"response is not JSON ({e}): {_snippet(resp.body)}") from None


def _headers(bearer_token: Optional[str], headers: Iterable[Tuple[str, str]]) -> list:
    out = [("Accept", "application/json")]
    if bearer_token is not None:
        out.append(("Authorization", f"Bearer {bearer_token}"))
    out.extend((str(name), str(value)) for name, value in headers)
    return out


def get_json(
    url: str, *, bearer_token: Optional[str] = None, headers: Iterable[Tuple[str, str]] = ()
) -> Any:
    """GETs ``url`` (``Accept: application/json``, and ``Authorization: Bearer``
    if ``bearer_token`` is given) and returns the body as JSON."""
    req = Request(method=Method.GET, url=url, headers=_headers(bearer_token, headers), body=None)
    return _json_of(send(req))


def post_json(
    url: str,
    payload: Any,
    *,
    bearer_token: Optional[str] = None,
    headers: Iterable[Tuple[str, str]] = (),
) -> Any:
    """POSTs ``payload`` as JSON to ``url`` and returns the answer's body as JSON."""
    all_headers = _headers(bearer_token, headers)
    all_headers.append(("Content-Type", "application/json"))
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    req = Request(method=Method.POST, url=url, headers=all_headers, body=body)
    return _json_of(send(req))
