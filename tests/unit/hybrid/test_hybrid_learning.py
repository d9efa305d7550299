"""Value score, pattern parsing and the deterministic extractor, dataset rendering and crash-safe appends."""

import json
from pathlib import Path

import pytest

from mcp_servers.hybrid.dataset import _append, render
from mcp_servers.hybrid.learning import content_hash, example_messages, value_score, worth_training
from mcp_servers.hybrid.patterns import deterministic_pattern, parse_pattern


def test_value_score_weights() -> None:
    best = value_score(outcome="success", feedback=1.0, reusability=1.0, complexity=1.0, novelty=1.0)
    worst = value_score(outcome="failure", feedback=-1.0, reusability=0.0, complexity=0.0, novelty=0.0)
    assert (best, worst) == (1.0, 0.0)
    only_outcome = value_score(outcome="success", feedback=-1.0, reusability=0, complexity=0, novelty=0)
    assert only_outcome == pytest.approx(0.4)
    assert value_score(outcome="failure", feedback=1.0, reusability=0, complexity=0, novelty=0) == pytest.approx(0.2)


def test_only_successful_non_secret_interactions_train() -> None:
    assert worth_training("success", None, False)
    assert not worth_training("success", -0.5, False)
    assert not worth_training("partial", 1.0, False)
    assert not worth_training("success", 1.0, True)


def test_content_hash_ignores_surrounding_whitespace() -> None:
    assert content_hash(example_messages("q ", "a")) == content_hash(example_messages("q", " a\n"))
    assert content_hash(example_messages("q", "a")) != content_hash(example_messages("q", "b"))


def test_parse_pattern_accepts_schema_shape_only() -> None:
    good = json.dumps(
        {"problem_type": "sorting", "approach": "use sorted", "skills": ["python"], "generalisable_pattern": "p"}
    )
    parsed = parse_pattern(good, "llm:local")
    assert parsed is not None and parsed.skills == ("python",) and parsed.extractor == "llm:local"
    assert parse_pattern("not json", "x") is None
    assert parse_pattern(json.dumps({"problem_type": "x"}), "x") is None


def test_deterministic_pattern_is_stable() -> None:
    first = deterministic_pattern("How do I sort a list?", "Use sorted(). It returns a new list.")
    again = deterministic_pattern("How do I sort a list?", "Use sorted(). It returns a new list.")
    assert first == again and first.extractor == "deterministic" and first.approach == "Use sorted()."


def test_render_formats() -> None:
    messages = example_messages("q", "a")
    assert json.loads(render(messages, "openai")) == {
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    }
    assert json.loads(render(messages, "sharegpt")) == {
        "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    }


def test_append_cuts_an_uncommitted_tail(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    size, reset = _append(path, 0, ["one\n"])
    assert (size, reset) == (4, False)
    path.write_text("one\ntorn-by-crash", encoding="utf-8")  # appended but never committed
    size, reset = _append(path, 4, ["two\n"])
    assert path.read_text(encoding="utf-8") == "one\ntwo\n" and size == 8
    _, reset = _append(path, 100, ["x\n"])
    assert reset  # committed bytes missing: the caller rebuilds the file
