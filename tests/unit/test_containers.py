"""Structure of containers/: Containerfile, compose.yaml and Prometheus rules, read as text.

The engine runs them for real in tests/e2e/containers/ (podman); these checks cover what those cannot reach,
e.g. services the e2e tests do not start (qdrant, llama, prometheus).
"""

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcp_servers.shared.observability.metrics import StackMetrics

REPO = Path(__file__).resolve().parents[2]
CONTAINERS = REPO / "containers"
PROMTOOL = REPO / ".tools" / "promtool" / "promtool"
# Prometheus' own series that rules may use besides ours.
PROMETHEUS_SERIES = {"up"}
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "API_KEY", "DSN", "PRIVATE")


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((CONTAINERS / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Containerfile, continuation lines joined, comments dropped."""
    text = (CONTAINERS / "Containerfile").read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in logical.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_containerfile_is_multi_stage_and_the_runtime_stage_runs_as_a_non_root_user() -> None:
    instructions = _instructions()
    stages = [index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert len(stages) >= 2
    runtime = instructions[stages[-1] :]
    assert "slim" in (CONTAINERS / "Containerfile").read_text(encoding="utf-8")
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert any(keyword == "COPY" and "--from=build" in args for keyword, args in runtime)


def test_containerfile_bakes_the_model_in_and_checks_health() -> None:
    instructions = _instructions()
    assert any(keyword == "RUN" and "mcp_servers.shared.embeddings.provision" in args for keyword, args in instructions)
    healthchecks = [args for keyword, args in instructions if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/health" in healthchecks[0]
    env = " ".join(args for keyword, args in instructions if keyword == "ENV")
    assert "MCP_STACK_EMBEDDER__MODEL_DIR=/opt/models/" in env


@pytest.mark.parametrize("name", sorted(_services()))
def test_every_service_has_limits_a_healthcheck_and_a_non_root_user(name: str) -> None:
    service = _services()[name]
    limits = service["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0
    assert re.fullmatch(r"\d+[kmg]", str(limits["memory"]))
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD" and len(test) > 1
    user = str(service["user"])
    assert user.split(":")[0] not in {"", "0", "root"}


@pytest.mark.parametrize("name", sorted(_services()))
def test_every_service_publishes_ports_on_loopback_only(name: str) -> None:
    for port in _services()[name].get("ports", []):
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), port


@pytest.mark.parametrize("name", sorted(_services()))
def test_no_secret_value_is_inline(name: str) -> None:
    environment = _services()[name].get("environment", {})
    assert isinstance(environment, dict), "use the mapping form so that names and values can be checked"
    for variable, value in environment.items():
        if any(word in variable.upper() for word in SECRET_WORDS):
            assert variable.endswith("_FILE"), f"{name}: {variable} must be read from a file (*_FILE)"
            assert str(value).startswith("/run/secrets/"), f"{name}: {variable} must point into /run/secrets"
    declared = set(_compose()["secrets"])
    for secret in _services()[name].get("secrets", []):
        source = secret["source"] if isinstance(secret, dict) else secret
        assert source in declared
    for spec in _compose()["secrets"].values():
        assert set(spec) == {"file"} and spec["file"].startswith("./secrets/")


@pytest.mark.parametrize("name", sorted(_services()))
def test_dependencies_wait_for_health_and_volumes_are_named(name: str) -> None:
    services = _services()
    for dependency, condition in services[name].get("depends_on", {}).items():
        assert dependency in services
        assert condition == {"condition": "service_healthy"}
    declared = set(_compose()["volumes"])
    for volume in services[name].get("volumes", []):
        source = volume.split(":")[0]
        assert source in declared or source.startswith("./"), volume


def test_the_stack_has_every_service_and_optional_ones_are_profiles() -> None:
    services = _services()
    assert {"postgres", "qdrant", "aidb", "hybrid", "ralph", "dashboard", "llama", "prometheus"} <= set(services)
    assert "pgvector" in services["postgres"]["image"]
    assert services["llama"]["profiles"] == ["llm"] and services["prometheus"]["profiles"] == ["monitoring"]
    for name in ("aidb", "hybrid", "ralph", "dashboard"):
        assert services[name]["user"] == "10001:10001"
        assert services[name]["environment"]["MCP_STACK_POSTGRES__DSN_FILE"] == "/run/secrets/postgres_dsn"


def _rule_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load((CONTAINERS / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    return [(rule["alert"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def _exported_metric_names() -> set[str]:
    metrics = StackMetrics("test", "0")
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    # Counters are registered without `_total` in the family name; an unset Gauge has no sample yet.
    names.update(f"{name}_total" for name in list(names))
    names.add("mcpstack_learning_backlog_bytes")
    return names


def test_alert_rules_cover_the_required_conditions_and_reference_only_exported_metrics() -> None:
    expressions = dict(_rule_expressions())
    assert {
        "McpStackBreakerOpen",
        "McpStackHighErrorRate",
        "McpStackDatabasePoolExhausted",
        "McpStackLearningBacklog",
    } <= set(expressions)
    exported = _exported_metric_names() | PROMETHEUS_SERIES
    for alert, expression in expressions.items():
        referenced = set(re.findall(r"\b(mcpstack_[a-z_]+|up)\b(?=\s*[{\[)=<>!*/+-]|\s*$)", expression))
        assert referenced, alert
        assert referenced <= exported, f"{alert} uses unknown metrics {referenced - exported}"


def _promtool() -> Path:
    if not PROMTOOL.exists():
        raise RuntimeError("promtool: run `scripts/provision-tools.sh promtool` (or `make tools`) to install it")
    return PROMTOOL


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = _promtool()
    checked = subprocess.run(
        [promtool, "check", "rules", "alerts.yml"], cwd=CONTAINERS / "prometheus", capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"], cwd=CONTAINERS / "prometheus", capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = subprocess.run(
        [promtool, "check", "config", "--syntax-only", "prometheus.yml"],
        cwd=CONTAINERS / "prometheus",
        capture_output=True,
        text=True,
    )
    # The config names the in-container rule path; --syntax-only skips resolving it.
    assert config.returncode == 0, config.stdout + config.stderr
