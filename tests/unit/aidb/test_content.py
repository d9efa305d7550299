"""Content normalisation and hashing."""

from mcp_servers.aidb.content import content_hash, guess_title, normalize_content


def test_line_endings_trailing_spaces_and_bom_do_not_change_the_hash() -> None:
    a = normalize_content("\ufeffHello  \r\nworld\r\n\r\n")
    b = normalize_content("Hello\nworld")
    assert a == b == "Hello\nworld"
    assert content_hash(a) == content_hash(b)


def test_unicode_forms_normalise_to_nfc() -> None:
    assert normalize_content("cafe\u0301") == "caf\u00e9"


def test_the_fingerprint_of_a_document_is_pinned() -> None:
    # store_document returns this as content_hash (SHA-256 of the normalised UTF-8 text): clients and stored rows
    # compare it across versions, so its value is pinned, not just its shape.
    raw = "\ufeffCafe\u0301 au lait  \r\nNo.\u200b 2\r\n\r\n"
    assert content_hash(normalize_content(raw)) == "7e58a1d155e1aa3795b5af36f8bbd84e365f5872f978816b79f53e5bc63fab1c"


def test_invisible_characters_do_not_change_the_hash_but_visible_ones_do() -> None:
    plain = content_hash(normalize_content("install the wheel"))
    assert content_hash(normalize_content("install\u200b the\u2060 wheel")) == plain
    assert content_hash(normalize_content("install the wheels")) != plain
    assert content_hash(normalize_content("old\rmac\rendings")) == content_hash(normalize_content("old\nmac\nendings"))


def test_title_is_the_first_heading_or_line() -> None:
    assert guess_title("# Install guide\ntext") == "Install guide"
    assert guess_title("\n  plain first line\nmore") == "plain first line"
    assert guess_title("", fallback="x.md") == "x.md"
