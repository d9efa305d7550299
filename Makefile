# Two commands on a fresh machine:  make run  (set up, start the stack)  ·  make test  (set up, run every check)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CACHE := $(HOME)/.cache/mcp-stack

.PHONY: setup sandbox run test lint typecheck pytest tools bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m mcp_servers.shared.embeddings.provision
	touch $(STAMP)

setup: $(STAMP)

# Ralph runs agents, hooks and verify commands under bubblewrap: install it on the way when apt can (as root);
# otherwise say so (Ralph then refuses command tasks, and `mcp-stack doctor` names the fix).
sandbox:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		bash scripts/provision-tools.sh sandbox; } || \
		echo "bubblewrap is missing: Ralph will refuse command tasks (install it: apt-get install bubblewrap)" >&2

# make run LLM=1: also provision and serve the local model (Gemma 3 270M) as Hybrid's backend.
# make run ROOT=~/notes: a directory AIDB's ingest_path may read.
run: setup sandbox
	$(if $(LLM),bash scripts/provision-tools.sh llama)
	$(VENV)/bin/mcp-stack up $(if $(LLM),--local-llm) $(if $(ROOT),--root $(ROOT))

tools: setup
	bash scripts/provision-tools.sh all

lint: setup
	$(VENV)/bin/ruff check mcp_servers tests bench
	$(VENV)/bin/ruff format --check mcp_servers tests bench
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy --strict mcp_servers

pytest: setup tools
	$(VENV)/bin/pytest -p no:cacheprovider

test: lint typecheck pytest

bench: setup tools
	$(PY) -m bench

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
