"""Deterministic point ids: the same chunk always maps to the same UUID, so re-indexing overwrites, never duplicates."""

import uuid

# Fixed namespace for this project's point ids; changing it would orphan every stored point.
POINT_NAMESPACE = uuid.UUID("6f1c9a52-4b0e-5d3a-9c1e-2a7d4e8b0f63")


def point_id(*parts: str | int) -> str:
    """UUIDv5 string of the parts, e.g. `point_id(document_id, chunk_index)`."""
    if not parts:
        raise ValueError("point_id needs at least one part")
    # The unit separator does not occur in ids, so ("a", "b c") and ("a b", "c") never collide.
    return str(uuid.uuid5(POINT_NAMESPACE, "\x1f".join(str(part) for part in parts)))
