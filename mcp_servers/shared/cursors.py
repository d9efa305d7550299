"""Opaque pagination cursors, bound to the query they continue: URL-safe base64 JSON.

A cursor names the last item a page returned (keyset pagination), so items inserted or deleted between pages
neither repeat nor shift what comes next. It carries a kind (which listing) and a fingerprint of the filters it
was minted for; a cursor from another listing or other filters is refused with `InvalidRequest`. A cursor is not
a credential: every page re-applies the caller's filters, so an edited position only moves where that same
query resumes (callers still validate the position's fields).
"""

import base64
import binascii
import hashlib
import json
from typing import Any

from mcp_servers.shared.errors import InvalidRequest

_VERSION = 1


def invalid_cursor() -> InvalidRequest:
    """The error for a cursor that is malformed or whose position does not parse."""
    return InvalidRequest("cursor is not valid; pass next_cursor from the previous page unchanged")


def fingerprint(*parts: Any) -> str:
    """Short stable digest of the query parameters a cursor belongs to."""
    encoded = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:16]


def encode_cursor(kind: str, query: str, position: dict[str, Any]) -> str:
    """Cursor for the page after `position`, valid only for the same `kind` and query fingerprint."""
    body = {"v": _VERSION, "k": kind, "q": query, "p": position}
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, kind: str, query: str) -> dict[str, Any]:
    """The position stored in `cursor`.

    Raises:
        InvalidRequest: the cursor is malformed, or was minted for another kind or other filters.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid_cursor() from None
    if not isinstance(body, dict) or body.get("v") != _VERSION or body.get("k") != kind:
        raise invalid_cursor()
    if body.get("q") != query:
        raise InvalidRequest("cursor belongs to a different query; repeat the same arguments or drop the cursor")
    position = body.get("p")
    if not isinstance(position, dict):
        raise invalid_cursor()
    return position
