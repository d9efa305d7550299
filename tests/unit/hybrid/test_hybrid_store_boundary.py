"""Hybrid's SQL lives in `hybrid/store.py` only: no other Hybrid module holds a SQL statement in a string."""

import ast
import re
from pathlib import Path

import mcp_servers.hybrid

PACKAGE = Path(mcp_servers.hybrid.__file__).parent
# A statement, not prose: an upper-case verb (the codebase's SQL style) with the clause that must come with it.
SQL = re.compile(
    r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b|"
    r"\bSELECT\s+(?:pg_|set_config|nextval|coalesce)|\bSET\s+LOCAL\b|\bON\s+CONFLICT\b"
)


def sql_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal (f-string parts included) in the module that reads like SQL."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            found.append((node.lineno, node.value.strip().splitlines()[0][:80]))
    return sorted(found)


def test_no_hybrid_module_but_store_holds_sql() -> None:
    offenders = {
        path.name: literals
        for path in sorted(PACKAGE.glob("*.py"))
        if path.name != "store.py" and (literals := sql_literals(path))
    }
    assert offenders == {}, "move these statements into mcp_servers/hybrid/store.py"


def test_the_scan_finds_the_statements_in_store() -> None:
    # Guards the scan itself: if it stopped recognising SQL, the test above would pass vacuously.
    found = " ".join(text for _, text in sql_literals(PACKAGE / "store.py"))
    for statement in (
        "INSERT INTO hybrid_interactions",
        "UPDATE hybrid_thresholds SET",
        "SELECT pg_advisory_xact_lock",
    ):
        assert statement in found
    assert len(sql_literals(PACKAGE / "store.py")) >= 30


def test_the_scan_ignores_prose_and_finds_each_kind_of_statement(tmp_path: Path) -> None:
    module = tmp_path / "sample.py"
    module.write_text(
        '"""Select the backend, then update the threshold; delete nothing."""\n'
        'a = "select a backend from the list, insert into the prompt, update its set"\n'
        'b = f"DELETE FROM hybrid_patterns WHERE id = {1}"\n'
        'c = "UPDATE hybrid_interactions SET pattern_id = $2"\n'
        'd = "INSERT INTO t VALUES (1)"\n'
        'e = "SET LOCAL synchronous_commit = off"\n',
        encoding="utf-8",
    )
    assert [line for line, _ in sql_literals(module)] == [3, 4, 5, 6]
