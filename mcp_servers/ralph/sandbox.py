"""The OS sandbox every command Ralph runs goes through (agent templates, hooks, verify commands, git checkpoints).

Under bubblewrap a command sees the system's programs and libraries read-only (/usr, a few /etc files), its task's
workspace read-write at the same path, a private /tmp (also its HOME), its own /proc and /dev, and nothing else:
no data dir, keys, telemetry, other workspaces or other processes. The network is off unless its template asks
for it. A server running as root starts bwrap without a user namespace and drops, inside, to an unprivileged
uid/gid with no capabilities and no_new_privs; any other user runs bwrap in a user namespace as itself.
`--die-with-parent` means nothing in a sandbox outlives the server process that started it.
"""

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from mcp_servers.shared.config import RalphSettings
from mcp_servers.shared.errors import InvalidRequest

logger = logging.getLogger(__name__)

# Read-only inside every sandbox when present: enough for dynamically linked programs, name lookups and TLS.
SYSTEM_RO_PATHS = (
    "/usr",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/passwd",
    "/etc/group",
    "/etc/gitconfig",
)
# Top-level directories that merged-/usr systems make symlinks into /usr; older layouts have real directories.
_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Where setpriv lives (util-linux, essential on Debian); it must lie under /usr to exist inside the sandbox.
SETPRIV = "/usr/bin/setpriv"
# Inside the sandbox: HOME and TMPDIR are the private /tmp, never the server's home.
SANDBOX_HOME = "/tmp"
INSTALL_HINT = "install it (Debian: apt-get install bubblewrap; or scripts/provision-tools.sh sandbox)"


class SandboxUnavailable(InvalidRequest):
    """Raised when commands must run sandboxed but bubblewrap is missing or cannot start; the caller sees how to
    fix it (install bubblewrap, or the operator opts out with MCP_STACK_RALPH__SANDBOX=none)."""


@dataclass(frozen=True, slots=True)
class Confinement:
    """What one command may reach besides the system: its workspace (read-write), the network, extra paths."""

    workspace: Path
    network: bool = False
    ro_binds: tuple[Path, ...] = ()
    # (host path, path inside): read-only binds at another place, e.g. an agent's config under the sandbox home.
    moved_binds: tuple[tuple[Path, Path], ...] = ()


class Sandbox:
    """Turns a command into its sandboxed form. Owns no resources; remembers only that bwrap worked once."""

    def __init__(self, settings: RalphSettings, *, euid: int | None = None) -> None:
        self.enabled = settings.sandbox == "bubblewrap"
        self._bwrap = str(settings.bwrap_path)
        self._extra = tuple(settings.sandbox_ro_binds)
        root = (os.geteuid() if euid is None else euid) == 0
        # The uid/gid commands run as, when it differs from ours (a root server never runs agents as root).
        self.run_as: tuple[int, int] | None = (settings.sandbox_uid, settings.sandbox_gid) if root else None
        self._verified = False
        # The read-only system part of every sandbox (symlinks or binds of /bin, /lib ...), read from the host once.
        self._system: tuple[str, ...] | None = None

    def command(
        self, argv: Sequence[str], env: Mapping[str, str], confinement: Confinement
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that run `argv` confined (unchanged when the sandbox is off)."""
        if not self.enabled:
            return list(argv), dict(env)
        return [*self._prefix(confinement), *argv], {**env, "HOME": SANDBOX_HOME, "TMPDIR": SANDBOX_HOME}

    def _prefix(self, confinement: Confinement) -> list[str]:
        args = [self._bwrap, "--die-with-parent", "--unshare-ipc", "--unshare-pid", "--unshare-uts"]
        args += ["--unshare-cgroup-try"]
        if not confinement.network:
            args.append("--unshare-net")
        if self.run_as is None:
            args.append("--unshare-user")  # unprivileged: the namespaces need a user namespace of their own
        if self._system is None:
            raise RuntimeError("Sandbox.ensure_available() must succeed before commands are built")
        args += self._system
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
        made: set[Path] = set()
        for bind in (*self._extra, *confinement.ro_binds):
            args += [*_parents(bind, made), "--ro-bind-try", str(bind), str(bind)]
        for source, target in confinement.moved_binds:
            args += [*_parents(target, made), "--ro-bind-try", str(source), str(target)]
        workspace = str(confinement.workspace)
        args += [*_parents(confinement.workspace, made), "--bind", workspace, workspace, "--chdir", workspace, "--"]
        if self.run_as is not None:
            uid, gid = self.run_as
            args += [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs"]
            args += ["--inh-caps=-all", "--bounding-set=-all", "--"]
        return args

    async def ensure_available(self) -> None:
        """Return once a sandboxed command can run here; SandboxUnavailable says why not and how to fix it."""
        if not self.enabled or self._verified:
            return
        if self._system is None:
            self._system = await anyio.to_thread.run_sync(_system_binds)
        if not await anyio.to_thread.run_sync(os.access, self._bwrap, os.X_OK):
            raise SandboxUnavailable(
                f"commands run in a bubblewrap sandbox, but {self._bwrap} is missing: {INSTALL_HINT}, "
                "or let the operator opt out with MCP_STACK_RALPH__SANDBOX=none"
            )
        if self.run_as is not None and not await anyio.to_thread.run_sync(os.access, SETPRIV, os.X_OK):
            raise SandboxUnavailable(f"the sandbox needs {SETPRIV} (Debian package util-linux) to drop root")
        # A real start proves what a stat cannot (e.g. user namespaces switched off for unprivileged users).
        argv, env = self.command(["true"], {"PATH": "/usr/bin:/bin"}, Confinement(Path("/tmp")))
        try:
            result = await anyio.run_process(argv, env=env, check=False, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise SandboxUnavailable(f"bubblewrap cannot start ({exc.strerror}): {INSTALL_HINT}") from None
        if result.returncode != 0:
            detail = result.stderr.decode("utf-8", errors="replace").strip()[-300:]
            raise SandboxUnavailable(f"bubblewrap cannot create a sandbox on this host: {detail}")
        self._verified = True

    async def prepare_workspace(self, workspace: Path) -> None:
        """Hand the workspace to the uid commands run as (a root server): it is the only place they may write."""
        if self.enabled and self.run_as is not None:
            await anyio.to_thread.run_sync(_chown_tree, workspace, *self.run_as)


def _parents(path: Path, made: set[Path]) -> list[str]:
    """Create the directories leading to a bind target as 0755: bwrap would make them 0700 (root's), which an
    unprivileged uid cannot traverse. They are empty directories of the sandbox, not the host's."""
    args: list[str] = []
    for parent in reversed(path.parents[:-1]):  # outermost first, without "/"
        if parent not in made:
            made.add(parent)
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


def _system_binds() -> tuple[str, ...]:
    """bwrap arguments for the host's system directories: merged-/usr symlinks as symlinks, the rest read-only."""
    args: list[str] = []
    for path in _USR_LINKS:
        try:
            args += ["--symlink", os.readlink(path), path]
        except OSError:  # a real directory (or absent): bound read-only instead
            args += ["--ro-bind-try", path, path]
    args += ["--perms", "0755", "--dir", "/etc"]  # bwrap would create it 0700
    for path in SYSTEM_RO_PATHS:
        args += ["--ro-bind-try", path, path]
    return tuple(args)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """chown a tree without following any symlink: fwalk works on directory fds, so an agent that swaps a
    directory for a link to /etc between two tasks cannot redirect the walk."""
    os.chown(root, uid, gid, follow_symlinks=False)
    for _, dirs, files, dir_fd in os.fwalk(root, follow_symlinks=False):
        for name in (*dirs, *files):
            try:
                os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:  # removed meanwhile
                continue


async def log_mode(settings: RalphSettings) -> None:
    """Say at start how commands will be confined; running them unconfined is an operator's explicit choice."""
    if settings.sandbox == "none":
        logger.warning(
            "ralph runs commands WITHOUT a sandbox (MCP_STACK_RALPH__SANDBOX=none): an agent or hook can reach "
            "everything this server's user can"
        )
    elif not await anyio.Path(settings.bwrap_path).exists():
        logger.warning(
            "ralph's sandbox (bubblewrap) is missing: tasks that run commands will be refused",
            extra={"bwrap_path": str(settings.bwrap_path), "hint": INSTALL_HINT},
        )
