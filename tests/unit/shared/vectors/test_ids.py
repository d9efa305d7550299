"""Deterministic point ids: stable UUIDv5 strings, distinct for distinct parts."""

import uuid

import pytest

from mcp_servers.shared.vectors.ids import point_id


def test_point_id_is_a_stable_uuid5_string() -> None:
    first = point_id("doc-1", 0)
    assert first == point_id("doc-1", 0)
    assert uuid.UUID(first).version == 5
    assert str(uuid.UUID(first)) == first


def test_point_id_separates_parts() -> None:
    assert point_id("a", "b c") != point_id("a b", "c")
    assert point_id("doc", 1) != point_id("doc", 2)
    assert point_id("doc", 1) == point_id("doc", "1")


def test_point_id_needs_parts() -> None:
    with pytest.raises(ValueError):
        point_id()
