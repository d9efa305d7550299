"""Chunking: markdown by headings, code by blocks, plain text by size with overlap."""

import itertools
from collections.abc import Callable

import pytest

from mcp_servers.aidb.chunking import MIN_PIECE_CHARS, ChunkStrategy, choose_strategy, chunk_document


def test_markdown_splits_at_headings_and_keeps_the_heading_path() -> None:
    text = "# Guide\nintro\n\n## Install\nrun pip\n\n## Usage\ncall it\n\n### Flags\n--x\n"
    chunks = chunk_document(text, strategy="markdown", max_tokens=200)
    assert [c.heading for c in chunks] == ["Guide", "Guide > Install", "Guide > Usage", "Guide > Usage > Flags"]
    assert chunks[3].text.startswith("Guide > Usage\n### Flags")
    assert [c.index for c in chunks] == [0, 1, 2, 3]
    assert chunks[1].start_line == 4


def test_headings_inside_code_fences_are_not_split_points() -> None:
    text = "# Title\n```bash\n# not a heading\necho hi\n```\n"
    chunks = chunk_document(text, strategy="markdown")
    assert len(chunks) == 1
    assert "# not a heading" in chunks[0].text


def test_a_bare_heading_joins_the_following_section() -> None:
    chunks = chunk_document("# Top\n## Sub\nbody text", strategy="markdown")
    assert len(chunks) == 1
    assert "# Top" in chunks[0].text and "body text" in chunks[0].text


def test_code_splits_at_top_level_definitions_when_blocks_exceed_the_budget() -> None:
    functions = [f"def f{i}(x):\n" + "".join(f"    y{j} = x + {j}\n" for j in range(12)) for i in range(6)]
    text = "import os\n\n" + "\n\n".join(functions)
    chunks = chunk_document(text, strategy="code", max_tokens=80)
    assert len(chunks) > 1
    for chunk in chunks:
        # No definition is cut in half: every chunk that holds a def holds its body's last line.
        for i in range(6):
            if f"def f{i}(" in chunk.text:
                assert "    y11 = x + 11" in chunk.text.split(f"def f{i}(")[1]
    assert chunks[1].heading.startswith("def f")


def test_decorators_stay_with_their_function() -> None:
    text = "\n\n".join(["@cache\ndef a():\n    return 1" + "\n    pass" * 60, "def b():\n    return 2"])
    chunks = chunk_document(text, strategy="code", max_tokens=100)
    assert chunks[0].text.startswith("@cache\ndef a()")


def test_plain_text_splits_by_size_with_overlap() -> None:
    words = [f"word{i}" for i in range(600)]
    chunks = chunk_document(" ".join(words), strategy="text", max_tokens=50, overlap_tokens=10)
    assert len(chunks) > 3
    assert all(len(c.text) <= 200 for c in chunks)
    for first, second in itertools.pairwise(chunks):
        assert first.text.split()[-1] in second.text.split()
    # Every word survives somewhere.
    joined = set(" ".join(c.text for c in chunks).split())
    assert set(words) <= joined


def test_empty_or_blank_document_has_no_chunks() -> None:
    assert chunk_document("   \n\n", strategy="text") == []


def test_huge_single_line_is_still_split() -> None:
    chunks = chunk_document("x" * 5000, strategy="text", max_tokens=100, overlap_tokens=0)
    assert len(chunks) == 13
    assert "".join(c.text for c in chunks) == "x" * 5000


def test_start_lines_count_from_the_document_start() -> None:
    text = "\n".join(f"line {i} " + "pad " * 20 for i in range(1, 101))
    chunks = chunk_document(text, strategy="text", max_tokens=100, overlap_tokens=0)
    for chunk in chunks:
        first = chunk.text.split()[1]
        assert chunk.start_line == int(first)


def test_strategy_follows_kind_extension_and_content() -> None:
    assert choose_strategy("doc", "notes/readme.md", "plain") == "markdown"
    assert choose_strategy("doc", "src/app.py", "text") == "code"
    assert choose_strategy("code", None, "x = 1") == "code"
    assert choose_strategy("doc", None, "# Heading\nbody") == "markdown"
    assert choose_strategy("doc", None, "just words") == "text"


def _words_at_most(limit: int) -> Callable[[str], bool]:
    return lambda text: len(text.split()) <= limit


@pytest.mark.parametrize("strategy", ["text", "markdown", "code"])
def test_pieces_the_model_would_cut_off_are_cut_shorter(strategy: ChunkStrategy) -> None:
    # 200 "tokens" are ~800 characters; with a model that reads 40 words, 800 characters of 3-letter words do not fit.
    heading = "# Options\n\n" if strategy == "markdown" else ""
    words = [f"w{i:02x}" for i in range(3000)]
    text = heading + "\n".join(" ".join(words[i : i + 12]) for i in range(0, len(words), 12))
    assert any(len(c.text.split()) > 40 for c in chunk_document(text, strategy=strategy))

    chunks = chunk_document(text, strategy=strategy, fits=_words_at_most(40))
    assert all(len(c.text.split()) <= 40 for c in chunks)
    assert set(words) <= set(" ".join(c.text for c in chunks).split())
    # Shortened pieces still move on (at most half of one overlaps the next): not a chunk per word or two.
    assert len(chunks) <= len(words) // 15


def test_a_piece_that_cannot_fit_is_kept_at_the_minimum_size() -> None:
    chunks = chunk_document("word " * 400, strategy="text", fits=lambda text: False)
    assert chunks and all(len(c.text) <= MIN_PIECE_CHARS for c in chunks)
    assert "".join(c.text for c in chunks).count("word") >= 400
