"""Hypothesis strategies for MCP tool arguments, built from each tool's JSON input schema, plus hostile values.

`arguments(schema)` draws: schema-valid arguments (most calls), valid ones with one value swapped for a hostile
one, valid ones with an unknown extra key, and arbitrary hostile objects. Sizes stay small so that thousands of
calls run in seconds; the hostile set carries the big, deep and odd values.
"""

from typing import Any

from hypothesis import strategies as st

MAX_TEXT = 40
MAX_ITEMS = 3

# Values no well-behaved client sends: each must come back as a validation or tool error, never a crash.
HOSTILE: tuple[Any, ...] = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",  # lone surrogates: JSON allows "\ud800" escapes, Python decodes them to unpaired code points
    "x\udfffy",
    "\ufeff\u200b\u202e\u2066",
    "e\u0301" * 50,
    "\U0001d54f" * 2_000,  # astral-plane letters
    "x" * 300_000,
    "../../../../etc/passwd",
    "/etc/passwd",
    "..\\..\\windows\\system32",
    "~/.ssh/id_rsa",
    "file:///etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/proc/self/environ",
    "'; DROP TABLE documents; --",
    "' OR '1'='1",
    "${jndi:ldap://127.0.0.1/x}",
    "{{7*7}}",
    "%s%s%n",
    "<script>alert(1)</script>",
    "null",
    -1,
    0,
    2**31,
    2**63,
    2**64 + 1,
    -(2**63) - 1,
    1e308,
    -1e-308,
    0.5,
    True,
    False,
    None,
    [],
    {},
    [None],
    {"": None},
    ["\x00"] * 5,
    list(range(10_000)),
)


def _nested_list(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def _nested_dict(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


hostile_values = st.one_of(
    st.sampled_from(HOSTILE),
    st.sampled_from([_nested_list(200), _nested_dict(200)]),
    st.text(alphabet=st.characters(codec=None, categories=None), max_size=MAX_TEXT),  # any code point, surrogates too
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(defs[ref.removeprefix("#/$defs/")], defs)
    return schema


def value_for(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """A strategy for values valid under a (pydantic-generated) JSON schema fragment."""
    schema = _resolve(schema, defs)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([value_for(option, defs, depth) for option in schema[key]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([value_for({**schema, "type": one}, defs, depth) for one in kind])
    if kind == "string":
        low = int(schema.get("minLength", 0))
        high = max(low, min(int(schema.get("maxLength", MAX_TEXT)), MAX_TEXT))
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: low <= len(s) <= high * 4)
        if schema.get("format") == "uuid":
            return st.uuids().map(str)
        return st.text(min_size=low, max_size=high)
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum"))
    if kind == "number":
        return st.floats(
            min_value=schema.get("minimum"), max_value=schema.get("maximum"), allow_nan=False, allow_infinity=False
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = schema.get("items", {})
        low = int(schema.get("minItems", 0))
        high = max(low, min(int(schema.get("maxItems", MAX_ITEMS)), MAX_ITEMS))
        if depth > 3:
            return st.just([])
        return st.lists(value_for(items, defs, depth + 1), min_size=low, max_size=high)
    if kind == "object" or "properties" in schema:
        if depth > 3:
            return st.just({})
        return object_for(schema, defs, depth + 1)
    return st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=MAX_TEXT))


def object_for(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    return st.fixed_dictionaries(
        {name: value_for(prop, defs, depth) for name, prop in properties.items() if name in required},
        optional={name: value_for(prop, defs, depth) for name, prop in properties.items() if name not in required},
    )


def arguments(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Tool arguments: valid, valid with one hostile value, valid plus an unknown key, or hostile throughout."""
    defs: dict[str, Any] = schema.get("$defs", {})
    valid = object_for(schema, defs)
    names = sorted(schema.get("properties", {})) or ["x"]

    def swap(args: dict[str, Any], name: str, bad: Any) -> dict[str, Any]:
        return {**args, name: bad}

    one_hostile = st.builds(swap, valid, st.sampled_from(names), hostile_values)
    extra_key = st.builds(swap, valid, st.sampled_from(["__proto__", "unknown", "\x00", "a" * 1000]), hostile_values)
    all_hostile = st.dictionaries(st.sampled_from(names) | st.text(max_size=10), hostile_values, max_size=4)
    return st.one_of(valid, valid, one_hostile, one_hostile, extra_key, all_hostile)
