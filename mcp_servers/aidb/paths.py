"""Path safety for ingest_path: only regular text files under the configured roots, never via `..` or symlinks.

Every check uses the fully resolved path, so a symlink inside a root that points outside it is refused
like a direct path outside. All functions here block (filesystem); callers run them in a worker thread.
"""

import bz2
import gzip
import lzma
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mcp_servers.aidb.html import html_text
from mcp_servers.aidb.pdf import pdf_text
from mcp_servers.shared.errors import InvalidRequest, NotFound

SNIFF_BYTES = 8192
# Directories that never hold knowledge worth indexing and can be huge.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".mypy_cache"})


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file under an allowed root: its resolved path and its path relative to the ingest target."""

    path: Path
    relative: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file ingest_path did not read, and why (in words a user understands)."""

    relative: str
    reason: str


@dataclass(frozen=True, slots=True)
class TextFile:
    """A file's text (decompressed; extracted from HTML or PDF), its size in bytes, and its title if it names one."""

    text: str
    size_bytes: int
    title: str | None = None
    name: str = ""  # the file name without a compression suffix: what decides the kind and chunking


def resolve_target(raw: str, roots: Sequence[Path]) -> tuple[Path, Path]:
    """The resolved target and the allowed root containing it.

    Relative paths are taken from the first root. Raises InvalidRequest for `..`, for anything outside the
    roots (also through symlinks) and when no root is configured; NotFound when absent.
    """
    if not roots:
        raise InvalidRequest("ingest_path is disabled: no allowed roots are configured (MCP_STACK_AIDB__ALLOWED_ROOTS)")
    if "\x00" in raw:
        raise InvalidRequest("path must not contain NUL characters")
    candidate = Path(raw)
    if ".." in candidate.parts:
        raise InvalidRequest("path must not contain '..'; pass a path inside an allowed root")
    resolved_roots = [Path(os.path.realpath(root)) for root in roots]
    if not candidate.is_absolute():
        candidate = resolved_roots[0] / candidate
    target = Path(os.path.realpath(candidate))
    root = containing_root(target, resolved_roots)
    if root is None:
        raise InvalidRequest("path is outside the allowed roots; ingest only files under MCP_STACK_AIDB__ALLOWED_ROOTS")
    if not target.exists():
        raise NotFound("path does not exist under the allowed roots")
    return target, root


def containing_root(resolved: Path, roots: Sequence[Path]) -> Path | None:
    """The first root that contains `resolved` (both already resolved), else None."""
    for root in roots:
        if resolved == root or resolved.is_relative_to(root):
            return root
    return None


@lru_cache(maxsize=64)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob (`*`, `?`, `**`, `[...]`) matched against a `/`-separated relative path."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")


def matches(relative: str, pattern: str) -> bool:
    """Glob match; a pattern without '/' matches the file name in any directory (like `*.md`)."""
    if "/" not in pattern:
        return glob_regex(pattern).match(relative.rsplit("/", 1)[-1]) is not None
    return glob_regex(pattern).match(relative) is not None


def walk(target: Path, roots: Sequence[Path], pattern: str, max_files: int) -> tuple[list[Candidate], list[Skipped]]:
    """Files under `target` matching `pattern`, and the ones refused (symlinks out, special files).

    Symlinked directories are not descended into; a symlinked file is followed only if it stays inside a root.
    """
    resolved_roots = [Path(os.path.realpath(root)) for root in roots]
    found: list[Candidate] = []
    skipped: list[Skipped] = []
    if target.is_file():
        return [Candidate(target, target.name)], []
    for relative in _iter_files(target):
        if not matches(relative, pattern):
            continue
        full = target / relative
        real = Path(os.path.realpath(full))
        if containing_root(real, resolved_roots) is None:
            skipped.append(Skipped(relative, "symlink points outside the allowed roots"))
            continue
        if not real.is_file():
            skipped.append(Skipped(relative, "not a regular file"))
            continue
        if len(found) >= max_files:
            skipped.append(Skipped(relative, f"over the limit of {max_files} files per call"))
            continue
        found.append(Candidate(real, relative))
    return found, skipped


def _iter_files(target: Path) -> Iterator[str]:
    for directory, dirnames, filenames in os.walk(target, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        base = Path(directory).relative_to(target)
        for name in sorted(filenames):
            yield (base / name).as_posix()


_COMPRESSED_SUFFIXES = frozenset({".gz", ".bz2", ".xz"})
_HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})


def read_text_file(path: Path, max_bytes: int) -> TextFile | str:
    """The file's text, or the reason it is skipped (oversized, binary, not UTF-8, a PDF without readable text).

    `.gz`, `.bz2` and `.xz` files are decompressed (at most `max_bytes` of output: a small bomb cannot fill
    memory); HTML is reduced to its text, with its title; a PDF (known by its `%PDF-` header) to its text layer.
    """
    name = path.name
    suffix = path.suffix.lower()
    compressed = suffix in _COMPRESSED_SUFFIXES
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return f"larger than the {max_bytes} byte limit"
        if not compressed:
            with path.open("rb") as handle:
                data = handle.read(max_bytes + 1)
        else:
            name = path.stem
            data = _decompressed(path, suffix, max_bytes + 1)
    except (OSError, EOFError, lzma.LZMAError, zlib.error):
        return "damaged compressed file" if compressed else "cannot be read"
    if len(data) > max_bytes:
        return f"larger than the {max_bytes} byte limit" + (" once decompressed" if compressed else "")
    if data.startswith(b"%PDF-"):
        document = pdf_text(data, max_bytes)
        if isinstance(document, str):
            return document
        return TextFile(text=document.text, size_bytes=document.size_bytes, title=document.title, name=name)
    if b"\x00" in data[:SNIFF_BYTES]:
        return "binary file"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "binary or not UTF-8 text"
    if Path(name).suffix.lower() in _HTML_SUFFIXES:
        page = html_text(text)
        return TextFile(text=page.text, size_bytes=len(data), title=page.title, name=name)
    return TextFile(text=text, size_bytes=len(data), name=name)


def _decompressed(path: Path, suffix: str, limit: int) -> bytes:
    """At most `limit` bytes of a compressed file's content."""
    if suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            return handle.read(limit)
    if suffix == ".bz2":
        with bz2.open(path, "rb") as handle:
            return handle.read(limit)
    with lzma.open(path, "rb") as handle:
        return handle.read(limit)
