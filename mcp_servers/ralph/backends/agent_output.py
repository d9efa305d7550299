"""Reading what an agent CLI printed: its final message, and the tokens and cost it reports where it does.

`claude -p --output-format json` prints one JSON object (`result`, `is_error`, `total_cost_usd`, `usage`);
`gemini -p --output-format json` prints one (`response`, `stats.models.*.tokens`, `error`) without a cost;
`aider --message` prints text with lines like `Tokens: 2.1k sent, 150 received. Cost: $0.0086 message, ...`.
Output that does not parse is kept as it is, with no usage (a cost cap then ends the task: fail closed).
"""

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from mcp_servers.shared.config import AgentOutput

_AIDER_COST = re.compile(r"Cost: \$(\d+(?:\.\d+)?) message")
_AIDER_TOKENS = re.compile(r"Tokens: ([\d.]+)(k?) sent, ([\d.]+)(k?) received")


@dataclass(frozen=True, slots=True)
class AgentReport:
    """What one run of an agent CLI said: the text to keep, usage (None: not reported) and its own error."""

    output: str
    cost_usd: Decimal | None = None
    tokens: int | None = None
    error: str | None = None


def read_agent_output(kind: AgentOutput, printed: str) -> AgentReport:
    """The agent's report from its captured stdout (and stderr) in the format its template names."""
    if kind == "claude_json":
        return _claude(printed)
    if kind == "gemini_json":
        return _gemini(printed)
    if kind == "aider_text":
        return _aider(printed)
    return AgentReport(printed)


def _last_json_object(printed: str) -> dict[str, Any] | None:
    """The JSON object the CLI printed last: the whole output, or its last line, or from the last line that opens
    an object to the end (pretty-printed); warnings on stderr may come before it."""
    text = printed.strip()
    candidates = [text, *reversed(text.splitlines())]
    starts = [index for index, line in enumerate(text.splitlines()) if line.startswith("{")]
    if starts:
        candidates.append("\n".join(text.splitlines()[starts[-1] :]))
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() and number >= 0 else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _claude(printed: str) -> AgentReport:
    found = _last_json_object(printed)
    if found is None or ("result" not in found and "is_error" not in found):
        return AgentReport(printed)
    usage = found.get("usage") if isinstance(found.get("usage"), dict) else None
    tokens = None
    if usage is not None:
        keys = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        tokens = sum(_count(usage.get(key)) for key in keys)
    error = None
    if found.get("is_error") is True:
        error = f"claude reported an error ({found.get('subtype') or 'error'})"
    return AgentReport(str(found.get("result") or ""), _decimal(found.get("total_cost_usd")), tokens, error)


def _gemini(printed: str) -> AgentReport:
    found = _last_json_object(printed)
    if found is None or ("response" not in found and "error" not in found):
        return AgentReport(printed)
    tokens = None
    stats = found.get("stats")
    models = stats.get("models") if isinstance(stats, dict) else None
    if isinstance(models, dict):
        tokens = sum(
            _count(model.get("tokens", {}).get("total"))
            for model in models.values()
            if isinstance(model, dict) and isinstance(model.get("tokens"), dict)
        )
    error = found.get("error")
    message = None
    if isinstance(error, dict):
        message = f"gemini reported an error: {str(error.get('message') or error.get('type') or 'error')[:300]}"
    return AgentReport(str(found.get("response") or ""), None, tokens, message)


def _aider(printed: str) -> AgentReport:
    costs = [Decimal(match) for match in _AIDER_COST.findall(printed)]
    tokens = 0
    for sent, sent_k, received, received_k in _AIDER_TOKENS.findall(printed):
        tokens += int(float(sent) * (1000 if sent_k else 1)) + int(float(received) * (1000 if received_k else 1))
    return AgentReport(printed, sum(costs, Decimal(0)) if costs else None, tokens or None)
