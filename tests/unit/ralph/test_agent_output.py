"""Reading agent CLIs' output: the shapes claude, gemini and aider print (from their documentation)."""

import json
from decimal import Decimal

from mcp_servers.ralph.backends.agent_output import read_agent_output

CLAUDE = {
    "type": "result",
    "subtype": "success",
    "is_error": False,
    "result": "Fixed the failing test. <promise>DONE</promise>",
    "total_cost_usd": 0.0523,
    "usage": {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 1, "cache_read_input_tokens": 2},
    "session_id": "s",
    "num_turns": 3,
}


def test_claude_json_gives_the_result_cost_and_tokens_even_after_warnings() -> None:
    report = read_agent_output("claude_json", "Warning: update available\n" + json.dumps(CLAUDE) + "\n")
    assert report.output == CLAUDE["result"]
    assert report.cost_usd == Decimal("0.0523")
    assert report.tokens == 18
    assert report.error is None


def test_claude_json_error_results_are_errors() -> None:
    report = read_agent_output("claude_json", json.dumps({**CLAUDE, "is_error": True, "subtype": "error_max_turns"}))
    assert report.error == "claude reported an error (error_max_turns)"


def test_unparseable_output_is_kept_with_no_usage() -> None:
    report = read_agent_output("claude_json", "Invalid API key · Please run /login")
    assert (report.output, report.cost_usd, report.tokens) == ("Invalid API key · Please run /login", None, None)


def test_gemini_json_pretty_printed_gives_the_response_and_tokens_without_cost() -> None:
    printed = json.dumps(
        {
            "response": "done",
            "stats": {"models": {"gemini-2.5-pro": {"tokens": {"prompt": 90, "candidates": 10, "total": 100}}}},
        },
        indent=2,
    )
    report = read_agent_output("gemini_json", "Loaded cached credentials.\n" + printed)
    assert (report.output, report.cost_usd, report.tokens, report.error) == ("done", None, 100, None)


def test_aider_text_sums_the_cost_and_tokens_of_every_message() -> None:
    printed = (
        "Applied edit to app.py\n"
        "Tokens: 2.1k sent, 150 received. Cost: $0.0086 message, $0.0086 session.\n"
        "Tokens: 900 sent, 50 received. Cost: $0.0014 message, $0.01 session.\n"
    )
    report = read_agent_output("aider_text", printed)
    assert report.output == printed
    assert report.cost_usd == Decimal("0.0100")
    assert report.tokens == 2100 + 150 + 900 + 50


def test_text_output_reports_nothing() -> None:
    report = read_agent_output("text", "Tokens: 1 sent, 1 received. Cost: $5 message")
    assert (report.cost_usd, report.tokens) == (None, None)
