"""Build the long-document retrieval set from documentation that ships on this machine (offline, deterministic).

Corpus: documentation files, READMEs, changelogs and manuals (GNU info, Vim help, CMake, Node.js, Python
packages' Markdown and reStructuredText) under /usr/share and this interpreter's site-packages; never manual
pages. Files are de-duplicated by content; a file longer than `MAX_WORDS` is cut at paragraph boundaries into
parts of at most `MAX_WORDS` words (at most `MAX_PARTS` parts per file), and parts shorter than `MIN_WORDS` are
dropped. Binary-looking files (few alphabetic words) are skipped.

Queries are written the way a person asks, from one section heading of a document and the product it belongs
to, through fixed templates ("how does X work in P?", "where does the P documentation explain X?"); the heading
is lower-cased and stripped of numbering and markup, and no sentence of the document is copied. Only headings
that occur in exactly one document are used, so each query has one right answer: its source document.

The corpus is written to `~/.cache/mcp-stack/bench-data/` (about 20 MB; not committed); `long_meta.json` beside
this script records the seed, counts and the SHA-256 of both files, and `--check` rebuilds and compares.

    python bench/data/build_long_set.py [--check]
"""

import argparse
import gzip
import hashlib
import json
import random
import re
import statistics
import sys
import sysconfig
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = Path.home() / ".cache/mcp-stack/bench-data"
CORPUS_FILE = "long_corpus.jsonl"
QUERIES_FILE = "long_queries.jsonl"
META = HERE / "long_meta.json"
SEED = 20261204
MIN_WORDS = 1000
MAX_WORDS = 6000
MAX_PARTS = 3
MAX_QUERIES = 1200
QUERIES_PER_DOCUMENT = 2

ROOTS = [Path("/usr/share/doc"), Path("/usr/share/info"), Path("/usr/share/vim"), Path("/usr/share/cmake-3.25/Help")]
_DOC_SUFFIXES = (".md", ".rst", ".txt", ".markdown", ".info")
_DOC_NAMES = ("readme", "changelog", "changes", "news", "history", "release", "todo", "faq", "hacking", "authors")
# Files that are data, logs, scripts or typeset output rather than prose (and manual pages, which the issue excludes).
_SKIP_NAME = re.compile(
    r"(^copyright$|\.(1|2|3|4|5|6|7|8|9)(\.gz)?$|\.(ps|pdf|html?|json|xml|sym|log|tar|css|js|py|pl|sh|c|h|png|jpg|"
    r"svg|gif|ico|cmake|in|am|ac|mk|yaml|yml|el|vim|patch|diff)(\.gz)?$)",
    re.IGNORECASE,
)
_SKIP_PARTS = {"man", "examples", "test", "tests", "i18n", "charmaps", "locale", "test-amd64", "syntax", "api_assets"}
_RST_UNDERLINE = re.compile(r"^([=\-~^*#+`'\".])\1{2,}\s*$")
_ATX = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
# Vim help: "2.1 Title            *tag*"
_NUMBERED = re.compile(r"^(\d+(\.\d+)*)\.?\s+([A-Z][^*]{2,70}?)\s{2,}\*[\w.:-]+\*")
_TOPIC_WORD = re.compile(r"[a-z][a-z0-9'+/-]*")
_MARKUP = re.compile(r"[*`_|<>\[\]{}()\"]|\s\*\S+\*|\s+\|\S+\|")
_GENERIC = {
    "introduction",
    "overview",
    "example",
    "examples",
    "description",
    "see also",
    "notes",
    "note",
    "options",
    "usage",
    "installation",
    "license",
    "changes",
    "bug fixes",
    "bugfixes",
    "new features",
    "summary",
    "contents",
    "table of contents",
    "general",
    "other",
    "misc",
    "miscellaneous",
    "synopsis",
    "authors",
    "credits",
    "deprecations",
    "fixes",
    "improvements",
    "documentation",
    "history",
    "returns",
    "parameters",
    "arguments",
    "details",
    "features",
    "requirements",
    "compatibility",
    "notable changes",
    "commits",
    "semver-minor commits",
    "semver-major commits",
    "other changes",
}
TEMPLATES = [
    "how does {topic} work in {product}?",
    "where does the {product} documentation explain {topic}?",
    "what should I know about {topic} when using {product}",
    "{product}: looking for the part about {topic}",
    "can you find the {product} docs on {topic}",
    "I need help with {topic} in {product}",
    "what does {product} say about {topic}?",
]


def candidate_files() -> list[Path]:
    """Documentation files under the roots and in site-packages, in a stable order (symlinks skipped)."""
    found: list[Path] = []
    site = Path(sysconfig.get_paths()["purelib"])
    for root in [*ROOTS, site]:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_symlink() or not path.is_file() or _SKIP_PARTS & {p.lower() for p in path.parts}:
                continue
            name = path.name.lower()
            bare = name.removesuffix(".gz")
            if _SKIP_NAME.search(name):
                continue
            if root == site and not bare.endswith((".md", ".rst")):
                continue
            if bare.endswith(_DOC_SUFFIXES) or bare.startswith(_DOC_NAMES) or ".info-" in bare:
                found.append(path)
    return found


def read(path: Path) -> str | None:
    """The file's text, gunzipped; None when it does not look like prose."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return None
    words = text.split()
    if not words:
        return None
    alphabetic = sum(1 for w in words if w.isalpha())
    return text if alphabetic / len(words) >= 0.5 else None


def product_of(path: Path) -> str:
    """The package or manual a file documents, as a person would name it."""
    parts = path.parts
    if "doc" in parts and parts.index("doc") + 1 < len(parts) - 1:
        name = parts[parts.index("doc") + 1]
    elif "info" in parts:
        name = path.name.split(".info")[0]
    elif "vim" in parts:
        name = "vim"
    elif "Help" in parts:
        name = "cmake"
    elif "site-packages" in parts:
        name = parts[parts.index("site-packages") + 1].split("-")[0]
    else:
        name = path.stem
    name = re.sub(r"^(lib|python3-)", "", name)
    name = re.sub(r"[-_]?(dev|common|doc|bin|data|utils|core|\d+(\.\d+)*[a-z]?)$", "", name)
    return name or path.stem


def parts_of(text: str) -> Iterator[str]:
    """The text, or consecutive pieces of at most MAX_WORDS words cut at blank lines."""
    paragraphs = re.split(r"\n\s*\n", text)
    piece: list[str] = []
    count = 0
    for paragraph in paragraphs:
        words = len(paragraph.split())
        if piece and count + words > MAX_WORDS:
            yield "\n\n".join(piece)
            piece, count = [], 0
        piece.append(paragraph)
        count += words
    if piece:
        yield "\n\n".join(piece)


def headings(text: str) -> list[str]:
    """Section titles: Markdown ATX, underlined (reStructuredText, info) and numbered ("2.1 Title") lines."""
    lines = text.split("\n")
    found: list[str] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        atx = _ATX.match(line)
        if atx:
            found.append(atx.group(1))
        elif (
            stripped
            and i + 1 < len(lines)
            and _RST_UNDERLINE.match(lines[i + 1].strip())
            and abs(len(lines[i + 1].strip()) - len(stripped)) <= 3
        ):
            found.append(stripped)
        else:
            numbered = _NUMBERED.match(stripped)
            if numbered:
                found.append(numbered.group(3))
    return found


def topic_of(heading: str) -> str | None:
    """A heading as a query topic (lower case, no numbering or markup), or None when it names nothing specific."""
    topic = _MARKUP.sub(" ", heading)
    topic = re.sub(r"^[\d.\s:-]+", "", topic)
    topic = re.sub(r"\s{2,}\S+$", "", topic)  # vim help: "Title      *tag*"
    topic = " ".join(topic.split()).strip(" .:-").lower()
    words = topic.split()
    if not 2 <= len(words) <= 7 or topic in _GENERIC or len(topic) > 70:
        return None
    if not all(_TOPIC_WORD.fullmatch(w) for w in words) or sum(1 for w in words if w.isalpha()) < 2:
        return None
    if re.search(r"version|release|changelog|\d+\.\d+", topic):
        return None
    return topic


def source_of(path: Path) -> str:
    """The file's path, relative to site-packages for a package's file (the checksums must not depend on where the
    virtual environment lives)."""
    site = Path(sysconfig.get_paths()["purelib"])
    return f"site-packages/{path.relative_to(site)}" if path.is_relative_to(site) else str(path)


def build() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The corpus and its queries."""
    documents: list[dict[str, str]] = []
    seen: set[str] = set()
    for path in candidate_files():
        text = read(path)
        if text is None:
            continue
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        product = product_of(path)
        pieces = [p for p in parts_of(text) if len(p.split()) >= MIN_WORDS][:MAX_PARTS]
        for number, piece in enumerate(pieces, start=1):
            title = path.name.removesuffix(".gz") + (f" (part {number})" if len(pieces) > 1 else "")
            documents.append(
                {"title": f"{product}: {title}", "product": product, "source": source_of(path), "content": piece}
            )
    for i, doc in enumerate(documents):
        doc["id"] = f"L{i:05d}"
    topics = {doc["id"]: sorted({t for h in headings(doc["content"]) if (t := topic_of(h))}) for doc in documents}
    counts = Counter(t for found in topics.values() for t in found)
    rng = random.Random(SEED)
    queries: list[dict[str, str]] = []
    for doc in documents:
        unique = [t for t in topics[doc["id"]] if counts[t] == 1 and doc["product"] not in t]
        for topic in rng.sample(unique, min(QUERIES_PER_DOCUMENT, len(unique))):
            template = rng.choice(TEMPLATES)
            queries.append({"query": template.format(topic=topic, product=doc["product"]), "relevant": doc["id"]})
    rng.shuffle(queries)
    return documents, queries[:MAX_QUERIES]


def _write(path: Path, rows: list[dict[str, str]]) -> str:
    data = "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows).encode()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare the checksums with long_meta.json")
    args = parser.parse_args()
    documents, queries = build()
    OUT.mkdir(parents=True, exist_ok=True)
    words = [len(doc["content"].split()) for doc in documents]
    meta = {
        "python": sys.version.split()[0],
        "seed": SEED,
        "documents": len(documents),
        "queries": len(queries),
        "median_words": int(statistics.median(words)),
        "total_words": sum(words),
        "corpus_sha256": _write(OUT / CORPUS_FILE, documents),
        "queries_sha256": _write(OUT / QUERIES_FILE, queries),
    }
    if args.check:
        recorded = json.loads(META.read_text(encoding="utf-8"))
        same = all(recorded.get(k) == meta[k] for k in ("corpus_sha256", "queries_sha256"))
        print("identical to long_meta.json" if same else f"differs from long_meta.json: {meta}")
        sys.exit(0 if same else 1)
    META.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
