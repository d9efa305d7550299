"""Content normalisation and hashing."""

from mcp_servers.aidb.content import content_hash, guess_title, normalize_content


def test_line_endings_trailing_spaces_and_bom_do_not_change_the_hash() -> None:
    a = normalize_content("\ufeffHello  \r\nworld\r\n\r\n")
    b = normalize_content("Hello\nworld")
    assert a == b == "Hello\nworld"
    assert content_hash(a) == content_hash(b)


def test_unicode_forms_normalise_to_nfc() -> None:
    assert normalize_content("cafe\u0301") == "caf\u00e9"


def test_different_text_has_a_different_sha256() -> None:
    assert content_hash("a") != content_hash("b")
    assert len(content_hash("a")) == 64


def test_title_is_the_first_heading_or_line() -> None:
    assert guess_title("# Install guide\ntext") == "Install guide"
    assert guess_title("\n  plain first line\nmore") == "plain first line"
    assert guess_title("", fallback="x.md") == "x.md"
