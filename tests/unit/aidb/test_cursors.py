"""Pagination cursors."""

import pytest

from mcp_servers.aidb.cursors import decode_cursor, encode_cursor, fingerprint
from mcp_servers.shared.errors import InvalidRequest


def test_cursor_round_trips_its_position() -> None:
    query = fingerprint("q", {"project": "p"}, 10)
    cursor = encode_cursor("search", query, {"score": 0.5, "id": "abc", "n": 10})
    assert decode_cursor(cursor, "search", query) == {"score": 0.5, "id": "abc", "n": 10}


def test_cursor_from_another_query_or_kind_is_refused() -> None:
    cursor = encode_cursor("search", fingerprint("a"), {"n": 1})
    with pytest.raises(InvalidRequest):
        decode_cursor(cursor, "search", fingerprint("b"))
    with pytest.raises(InvalidRequest):
        decode_cursor(cursor, "list", fingerprint("a"))


@pytest.mark.parametrize("garbage", ["", "!!!", "bm90IGpzb24", "W10", "eyJ2IjoxfQ"])
def test_malformed_cursor_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidRequest):
        decode_cursor(garbage, "search", fingerprint("a"))


def test_fingerprint_is_order_independent_for_mappings() -> None:
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
