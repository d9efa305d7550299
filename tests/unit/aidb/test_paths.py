"""Path safety for ingest_path: roots, '..', symlinks, binary and oversized files."""

import gzip
import os
from pathlib import Path

import pytest

from mcp_servers.aidb.paths import TextFile, matches, read_text_file, resolve_target, walk
from mcp_servers.aidb.pdf import DAMAGED, ENCRYPTED, MAX_PAGES, NO_TEXT
from mcp_servers.shared.errors import InvalidRequest, NotFound
from tests.pdfs import encrypted, pdf_bytes


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "docs" / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "docs" / "a.md").write_text("# A", encoding="utf-8")
    (root / "docs" / "sub" / "b.md").write_text("# B", encoding="utf-8")
    (root / "docs" / "c.txt").write_text("c", encoding="utf-8")
    (outside / "secret.md").write_text("secret", encoding="utf-8")
    os.symlink(outside / "secret.md", root / "docs" / "link.md")
    os.symlink(outside, root / "docs" / "linkdir")
    return root, outside


def test_relative_path_resolves_under_the_first_root(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    target, found_root = resolve_target("docs", [root])
    assert target == root.resolve() / "docs"
    assert found_root == root.resolve()


@pytest.mark.parametrize("raw", ["../outside", "docs/../../outside", "docs/.."])
def test_dot_dot_is_refused(tree: tuple[Path, Path], raw: str) -> None:
    with pytest.raises(InvalidRequest):
        resolve_target(raw, [tree[0]])


def test_absolute_path_outside_the_roots_is_refused(tree: tuple[Path, Path]) -> None:
    with pytest.raises(InvalidRequest):
        resolve_target(str(tree[1]), [tree[0]])
    with pytest.raises(InvalidRequest):
        resolve_target("/etc/passwd", [tree[0]])


def test_symlink_pointing_out_is_refused_as_target(tree: tuple[Path, Path]) -> None:
    with pytest.raises(InvalidRequest):
        resolve_target("docs/link.md", [tree[0]])
    with pytest.raises(InvalidRequest):
        resolve_target("docs/linkdir", [tree[0]])


def test_no_roots_means_ingest_is_disabled(tree: tuple[Path, Path]) -> None:
    with pytest.raises(InvalidRequest):
        resolve_target("docs", [])


def test_missing_path_is_not_found(tree: tuple[Path, Path]) -> None:
    with pytest.raises(NotFound):
        resolve_target("docs/missing.md", [tree[0]])


def test_walk_matches_the_glob_and_skips_symlinks_out(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    target, _ = resolve_target("docs", [root])
    found, skipped = walk(target, [root], "*.md", max_files=100)
    assert sorted(c.relative for c in found) == ["a.md", "sub/b.md"]
    assert [(s.relative, "outside" in s.reason) for s in skipped] == [("link.md", True)]


def test_walk_respects_the_file_limit(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    found, skipped = walk(root / "docs", [root], "**", max_files=1)
    assert len(found) == 1
    assert any("limit" in s.reason for s in skipped)


@pytest.mark.parametrize(
    ("relative", "pattern", "expected"),
    [
        ("a.md", "*.md", True),
        ("x/y/a.md", "*.md", True),
        ("x/y/a.md", "**/*.md", True),
        ("a.md", "**/*.md", True),
        ("x/a.md", "x/*.md", True),
        ("x/y/a.md", "x/*.md", False),
        ("a.py", "*.md", False),
        ("a1.md", "a?.md", True),
        ("b.md", "[ab].md", True),
        ("c.md", "[!ab].md", True),
    ],
)
def test_glob_matching(relative: str, pattern: str, expected: bool) -> None:
    assert matches(relative, pattern) is expected


def test_binary_oversized_and_non_utf8_files_are_skipped_with_a_reason(tmp_path: Path) -> None:
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"abc\x00def")
    latin = tmp_path / "l.txt"
    latin.write_bytes("caf\u00e9".encode("latin-1"))
    big = tmp_path / "big.txt"
    big.write_text("x" * 101, encoding="utf-8")
    good = tmp_path / "good.txt"
    good.write_text("hello", encoding="utf-8")
    assert read_text_file(binary, 100) == "binary file"
    assert "UTF-8" in str(read_text_file(latin, 100))
    assert "limit" in str(read_text_file(big, 100))
    assert read_text_file(good, 100) == TextFile(text="hello", size_bytes=5, name="good.txt")


def test_compressed_text_is_read_within_the_limit_and_html_becomes_text(tmp_path: Path) -> None:
    notes = tmp_path / "notes.md.gz"
    notes.write_bytes(gzip.compress(b"# Notes\nhello"))
    assert read_text_file(notes, 100) == TextFile(text="# Notes\nhello", size_bytes=13, name="notes.md")
    bomb = tmp_path / "bomb.txt.gz"
    bomb.write_bytes(gzip.compress(b"a" * 10_000_000))  # about 10 KB packed
    assert read_text_file(bomb, 1_000_000) == "larger than the 1000000 byte limit once decompressed"
    damaged = tmp_path / "damaged.txt.xz"
    damaged.write_bytes(b"not xz at all")
    assert read_text_file(damaged, 100) == "damaged compressed file"
    page = tmp_path / "page.html"
    page.write_text("<body><h1>Only &lt;h1&gt;</h1><script>x()</script><p>Body text.</p></body>", encoding="utf-8")
    loaded = read_text_file(page, 1000)
    assert isinstance(loaded, TextFile)
    assert (loaded.title, loaded.text) == ("Only <h1>", "# Only <h1>\n\nBody text.")


def test_pdf_text_layer_is_extracted_and_unreadable_pdfs_are_skipped_with_a_reason(tmp_path: Path) -> None:
    def read(name: str, data: bytes, limit: int = 100_000) -> TextFile | str:
        (tmp_path / name).write_bytes(data)
        return read_text_file(tmp_path / name, limit)

    paper = pdf_bytes(["Hello PDF world", "with (parentheses)"], [], ["Page three"], title="Quarterly report")
    text = "Hello PDF world\nwith (parentheses)\n\nPage three"
    assert read("paper.pdf", paper) == TextFile(
        text=text, size_bytes=len(text), title="Quarterly report", name="paper.pdf"
    )
    untitled = read("untitled.pdf", pdf_bytes([], ["  First line  ", "second"]))
    assert isinstance(untitled, TextFile) and (untitled.title, untitled.text) == ("First line", "First line\nsecond")
    packed = read("paper.pdf.gz", gzip.compress(paper))
    assert isinstance(packed, TextFile) and (packed.text, packed.name) == (text, "paper.pdf")
    # An empty user password only restricts printing and copying: the text is readable without asking.
    restricted = read("restricted.pdf", encrypted(paper, user_password=""))
    assert isinstance(restricted, TextFile) and (restricted.text, restricted.title) == (text, "Quarterly report")

    assert read("locked.pdf", encrypted(paper, user_password="secret")) == ENCRYPTED
    assert read("truncated.pdf", paper[: len(paper) // 2]) == DAMAGED
    assert read("garbage.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8) == DAMAGED
    assert read("scan.pdf", pdf_bytes([])) == NO_TEXT
    bomb = pdf_bytes(*[["many words " * 40] * 40] * 20, deflate=True)  # about 350 KB of text in a few KB
    assert len(bomb) < 10_000
    assert read("bomb.pdf", bomb) == "larger than the 100000 byte limit once extracted"
    long = pdf_bytes(*[[]] * (MAX_PAGES + 1))
    assert read("long.pdf", long, limit=len(long)) == f"PDF has more than {MAX_PAGES} pages"
