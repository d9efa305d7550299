"""The shared pagination cursor codec: opaque, bound to its listing and to the filters it was minted for."""

import base64
import json

import pytest

from mcp_servers.shared.cursors import decode_cursor, encode_cursor, fingerprint, invalid_cursor
from mcp_servers.shared.errors import InvalidRequest


def test_cursor_round_trips_its_position() -> None:
    query = fingerprint("q", {"project": "p"}, 10)
    cursor = encode_cursor("search", query, {"score": 0.5, "id": "abc", "n": 10})
    assert decode_cursor(cursor, "search", query) == {"score": 0.5, "id": "abc", "n": 10}


def test_cursor_is_url_safe_without_padding() -> None:
    cursor = encode_cursor("tasks", fingerprint("running"), {"c": "2026-01-02T03:04:05+00:00", "i": "x" * 37})
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_cursor_from_another_query_or_kind_is_refused() -> None:
    cursor = encode_cursor("search", fingerprint("a"), {"n": 1})
    with pytest.raises(InvalidRequest):
        decode_cursor(cursor, "search", fingerprint("b"))
    with pytest.raises(InvalidRequest):
        decode_cursor(cursor, "list", fingerprint("a"))


def test_cursor_minted_for_one_filter_is_refused_for_another() -> None:
    running = encode_cursor("tasks", fingerprint("running"), {"i": "1"})
    assert decode_cursor(running, "tasks", fingerprint("running")) == {"i": "1"}
    for other in ("finished", None):
        with pytest.raises(InvalidRequest):
            decode_cursor(running, "tasks", fingerprint(other))


def test_an_edited_filter_fingerprint_is_refused() -> None:
    cursor = encode_cursor("tasks", fingerprint("running"), {"i": "1"})
    body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    body["q"] = fingerprint("stopped")
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
    with pytest.raises(InvalidRequest):
        decode_cursor(forged, "tasks", fingerprint("running"))


@pytest.mark.parametrize("garbage", ["", "!!!", "é", "bm90IGpzb24", "W10", "eyJ2IjoxfQ"])
def test_malformed_cursor_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidRequest):
        decode_cursor(garbage, "search", fingerprint("a"))


def test_a_cursor_whose_position_is_not_an_object_is_refused() -> None:
    body = {"v": 1, "k": "tasks", "q": fingerprint(None), "p": [1, 2]}
    cursor = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
    with pytest.raises(InvalidRequest):
        decode_cursor(cursor, "tasks", fingerprint(None))


def test_fingerprint_is_order_independent_for_mappings_and_tells_filters_apart() -> None:
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert len({fingerprint(None), fingerprint("running"), fingerprint("finished"), fingerprint()}) == 4


def test_invalid_cursor_is_an_invalid_request() -> None:
    assert isinstance(invalid_cursor(), InvalidRequest)
