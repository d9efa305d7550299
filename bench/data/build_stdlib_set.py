"""Build the AIDB retrieval set from the Python standard library's docstrings (offline, deterministic).

Corpus: one document per public function, method or class whose docstring has a one-line summary and a body;
the document is the signature plus the docstring *without* its summary. Query: the summary line. The relevant
document of a query is the one its summary was taken from, so the task is "find the API described in a
sentence", and the query's words are not copied verbatim into its document.

    python bench/data/build_stdlib_set.py     # writes bench/data/stdlib_corpus.jsonl, stdlib_queries.jsonl
"""

import ast
import json
import random
import sys
import sysconfig
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261128
MAX_DOCUMENTS = 4000
QUERIES = 600
MIN_BODY_CHARS = 80
MIN_SUMMARY_WORDS = 4
# Packages that are tests, GUIs, vendored or generated code rather than documented APIs.
SKIP_PARTS = {
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "site-packages",
    "__phello__",
}


def stdlib_files() -> list[Path]:
    """Every .py file of this interpreter's standard library, in a stable order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if not SKIP_PARTS & set(p.relative_to(root).parts))


def module_name(path: Path) -> str:
    """Dotted module name of a stdlib file."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def entries(path: Path) -> list[dict[str, str]]:
    """(name, signature, summary, body) of each documented public definition in a file."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return []
    module = module_name(path)
    found: list[dict[str, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if child.name.startswith("_"):
                    continue
                name = f"{prefix}.{child.name}"
                doc = ast.get_docstring(child, clean=True)
                if doc:
                    summary, _, body = doc.partition("\n\n")
                    summary = " ".join(summary.split())
                    body = body.strip()
                    if len(summary.split()) >= MIN_SUMMARY_WORDS and len(body) >= MIN_BODY_CHARS:
                        if isinstance(child, ast.ClassDef):
                            signature = f"class {name}"
                        else:
                            signature = f"def {name}({ast.unparse(child.args)})"
                        found.append({"name": name, "signature": signature, "summary": summary, "body": body})
                if isinstance(child, ast.ClassDef):
                    visit(child, name)

    visit(tree, module)
    return found


def main() -> None:
    candidates = [entry for path in stdlib_files() for entry in entries(path)]
    # A summary shared by several APIs ("Return a copy of ...") has no single right answer: drop them all.
    summaries = Counter(entry["summary"].lower() for entry in candidates)
    bodies = Counter(entry["body"] for entry in candidates)
    unique = [e for e in candidates if summaries[e["summary"].lower()] == 1 and bodies[e["body"]] == 1]
    rng = random.Random(SEED)
    rng.shuffle(unique)
    chosen = sorted(unique[:MAX_DOCUMENTS], key=lambda e: e["name"])
    corpus = [
        {"id": f"d{i:05d}", "title": entry["name"], "content": f"{entry['signature']}\n\n{entry['body']}"}
        for i, entry in enumerate(chosen)
    ]
    queries_pool = list(zip(chosen, corpus, strict=True))
    rng.shuffle(queries_pool)
    queries = [{"query": entry["summary"], "relevant": doc["id"]} for entry, doc in queries_pool[:QUERIES]]
    with (HERE / "stdlib_corpus.jsonl").open("w", encoding="utf-8") as out:
        for doc in corpus:
            out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    with (HERE / "stdlib_queries.jsonl").open("w", encoding="utf-8") as out:
        for query in queries:
            out.write(json.dumps(query, ensure_ascii=False) + "\n")
    meta = {"python": sys.version.split()[0], "seed": SEED, "documents": len(corpus), "queries": len(queries)}
    (HERE / "stdlib_meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
