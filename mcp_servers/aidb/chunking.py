"""Split a document into chunks for embedding: markdown by headings, code by top-level blocks, text by size.

Sizes are in characters (about four per MiniLM token on prose; technical text has more tokens per character).
Given the embedder's `fits`, a piece the model would cut off is shortened at an earlier boundary instead, so the
model reads every chunk whole. Each chunk keeps where it came from (heading path, first line) so a search hit can
say so.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Literal

ChunkStrategy = Literal["markdown", "code", "text"]

CHARS_PER_TOKEN = 4
#: A piece is not shortened below this many characters to make it fit (a title alone may not fit).
MIN_PIECE_CHARS = 64

Fits = Callable[[str], bool]

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_CODE_EXTENSIONS = frozenset(
    [
        ".py",
        ".pyi",
        ".js",
        ".jsx",
        ".ts",
        ".tsx",
        ".go",
        ".rs",
        ".java",
        ".kt",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".hpp",
        ".cs",
        ".rb",
        ".php",
        ".swift",
        ".scala",
        ".sh",
        ".bash",
        ".sql",
        ".lua",
        ".r",
        ".m",
        ".ex",
        ".exs",
        ".erl",
        ".hs",
        ".ml",
        ".clj",
        ".toml",
        ".yaml",
        ".yml",
        ".json",
    ]
)
_MARKDOWN_EXTENSIONS = frozenset([".md", ".markdown", ".mdx", ".rst"])
# A top-level statement that usually opens a new block in most languages.
_BLOCK_START = re.compile(
    r"^(?:@|def |async def |class |fn |pub |impl |struct |enum |trait |func |function |export |const |let |var |"
    r"interface |type |module |package |import |from |public |private |protected |static |template|#include|"
    r"CREATE |ALTER |SELECT |INSERT |[A-Za-z_][\w.]*\s*[:=(])"
)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document: its text (with heading context), position and where it starts."""

    index: int
    text: str
    heading: str
    start_line: int


def choose_strategy(kind: str, source: str | None, text: str) -> ChunkStrategy:
    """Code for code kinds or code files, markdown for markdown files or text with headings, else plain text."""
    suffix = ""
    if source:
        name = source.rsplit("/", 1)[-1].lower()
        suffix = name[name.rfind(".") :] if "." in name else ""
    if suffix in _MARKDOWN_EXTENSIONS:
        return "markdown"
    if kind == "code" or suffix in _CODE_EXTENSIONS:
        return "code"
    if any(_HEADING.match(line) for line in text.split("\n", 400)[:400]):
        return "markdown"
    return "text"


def chunk_document(
    text: str, *, strategy: ChunkStrategy, max_tokens: int = 200, overlap_tokens: int = 30, fits: Fits | None = None
) -> list[Chunk]:
    """Chunks of at most ~`max_tokens` tokens; an empty document yields no chunk.

    Args:
        overlap_tokens: how much consecutive size-split pieces share, so a sentence cut at a boundary is
            still found whole in one of them.
        fits: whether the embedding model reads a chunk's text whole; a piece that does not fit is cut shorter.
    """
    budget = max(64, max_tokens * CHARS_PER_TOKEN)
    overlap = min(max(0, overlap_tokens * CHARS_PER_TOKEN), budget // 2)
    if not text.strip():
        return []
    if strategy == "markdown":
        pieces = list(_markdown_pieces(text, budget, overlap, fits))
    elif strategy == "code":
        pieces = list(_code_pieces(text, budget, overlap, fits))
    else:
        pieces = [("", line, piece) for line, piece in _split_by_size(text, budget, overlap, 1, fits)]
    return [
        Chunk(index=i, text=body, heading=heading, start_line=line)
        for i, (heading, line, body) in enumerate(pieces)
        if body.strip()
    ]


def _split_by_size(
    text: str, budget: int, overlap: int, first_line: int, fits: Fits | None = None
) -> Iterator[tuple[int, str]]:
    """Windows of at most `budget` characters, cut at paragraph, line, sentence or word ends when possible, and
    shorter where `fits` says the model would not read the window whole."""
    start = 0
    length = len(text)
    # Line numbers are counted incrementally: counting from 0 each time is quadratic on a 10 MB file.
    counted_to, line = 0, first_line
    while start < length:
        # Skip whitespace so no chunk starts blank.
        while start < length and text[start].isspace():
            start += 1
        if start >= length:
            return
        end = min(length, start + budget)
        if end < length:
            end = _best_cut(text, start, end)
        piece = text[start:end].strip()
        while fits is not None and end - start > MIN_PIECE_CHARS and not fits(piece):
            # Dense text (symbols, identifiers, non-English) runs to more tokens per character than the budget
            # assumes: cut at a boundary in the window's first 80% and look again.
            end = _best_cut(text, start, start + max(MIN_PIECE_CHARS, (end - start) * 4 // 5))
            piece = text[start:end].strip()
        if piece:
            line += text.count("\n", counted_to, start)
            counted_to = start
            yield line, piece
        if end >= length:
            return
        # A piece shortened to fit shares at most half of itself, so the next one still moves on.
        next_start = max(end - min(overlap, (end - start) // 2), start + 1)
        if overlap:
            # Start the overlap at a word boundary, not mid-word.
            space = text.find(" ", next_start, end)
            next_start = space + 1 if space != -1 else next_start
        start = next_start


def _best_cut(text: str, start: int, end: int) -> int:
    """The last paragraph, line, sentence or word boundary in the window's second half (else `end`)."""
    floor = start + (end - start) // 2
    for separator in ("\n\n", "\n", ". ", "? ", "! ", "; ", " "):
        cut = text.rfind(separator, floor, end)
        if cut != -1:
            return cut + len(separator)
    return end


def _markdown_pieces(text: str, budget: int, overlap: int, fits: Fits | None) -> Iterator[tuple[str, int, str]]:
    """Sections split at headings (outside code fences); each chunk carries its heading path."""
    sections: list[tuple[list[str], int, list[str]]] = []  # (heading path, first line, lines)
    path: list[tuple[int, str]] = []
    current: list[str] = []
    current_path: list[str] = []
    current_line = 1
    in_fence = False
    for number, line in enumerate(text.split("\n"), start=1):
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line)
        if heading:
            if any(part.strip() for part in current):
                sections.append((current_path, current_line, current))
            level = len(heading.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, heading.group(2))]
            current_path = [title for _, title in path]
            current = [line]
            current_line = number
        else:
            current.append(line)
    if any(part.strip() for part in current):
        sections.append((current_path, current_line, current))

    # A section that is only its heading joins the next one, so no chunk is a bare title.
    merged: list[tuple[list[str], int, str]] = []
    carry: tuple[list[str], int, str] | None = None
    for heading_path, first, lines in sections:
        body = "\n".join(lines).strip("\n")
        if carry is not None:
            first, body = carry[1], carry[2] + "\n\n" + body
            carry = None
        if len(body.split("\n")) == 1 and _HEADING.match(body):
            carry = (heading_path, first, body)
            continue
        merged.append((heading_path, first, body))
    if carry is not None:
        merged.append(carry)

    for heading_path, first, body in merged:
        breadcrumb = " > ".join(heading_path)
        # Ancestors' titles give a deep section's chunks the context a search query names.
        prefix = " > ".join(heading_path[:-1])
        lead = f"{prefix}\n" if prefix else ""
        room = max(budget - len(lead), budget // 2)
        fits_after_lead = None if fits is None else partial(_fits_after, fits, lead)
        for start_line, piece in _split_by_size(body, room, overlap, first, fits_after_lead):
            yield breadcrumb, start_line, lead + piece


def _fits_after(fits: Fits, lead: str, piece: str) -> bool:
    return fits(lead + piece)


def _code_pieces(text: str, budget: int, overlap: int, fits: Fits | None) -> Iterator[tuple[str, int, str]]:
    """Top-level blocks (a definition and what follows it), packed greedily up to the budget."""
    lines = text.split("\n")
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    current_line = 1
    previous_blank = True
    for number, line in enumerate(lines, start=1):
        top_level = bool(line) and not line[0].isspace() and _BLOCK_START.match(line) is not None
        # A decorator or comment right above a definition belongs to it.
        attached = bool(current) and current[-1].lstrip().startswith(("@", "#", "//", "/*", "*", "--"))
        if top_level and previous_blank and current and not attached and any(c.strip() for c in current):
            blocks.append((current_line, current))
            current, current_line = [], number
        current.append(line)
        previous_blank = not line.strip()
    if any(c.strip() for c in current):
        blocks.append((current_line, current))

    packed: list[tuple[int, str]] = []
    for first, block_lines in blocks:
        block = "\n".join(block_lines).strip("\n")
        if packed and len(packed[-1][1]) + 1 + len(block) <= budget:
            packed[-1] = (packed[-1][0], packed[-1][1] + "\n\n" + block)
        else:
            packed.append((first, block))
    for first, block in packed:
        name = _block_name(block)
        if len(block) <= budget and (fits is None or fits(block)):
            yield name, first, block
        else:
            for start_line, piece in _split_by_size(block, budget, overlap, first, fits):
                yield name, start_line, piece


def _block_name(block: str) -> str:
    """The first definition line of a block, shortened, as its 'heading'."""
    for line in block.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith(("@", "#", "//", "/*", "*", "--", "import ", "from ")):
            return stripped[:120]
    return ""
