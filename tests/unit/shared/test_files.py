"""Private directories: what the stack creates is 0700, its own state dirs are tightened, nothing else changes."""

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_servers.shared.files import make_data_dir, make_private_dir, make_state_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The umask most users have (022), under which `mkdir -p` makes 0755 dirs: ours must not depend on it."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_missing_dirs_and_parents_are_created_private_and_an_existing_ancestor_keeps_its_mode(
    tmp_path: Path, loose_umask: None
) -> None:
    tmp_path.chmod(0o751)

    make_private_dir(tmp_path / "a" / "b" / "c")

    assert [_mode(tmp_path / part) for part in ("a", "a/b", "a/b/c")] == [0o700, 0o700, 0o700]
    assert _mode(tmp_path) == 0o751


def test_an_existing_dir_keeps_its_mode_when_only_made_private(tmp_path: Path, loose_umask: None) -> None:
    (tmp_path / "shared").mkdir(mode=0o755)

    make_private_dir(tmp_path / "shared")

    assert _mode(tmp_path / "shared") == 0o755


def test_a_state_dir_an_earlier_version_left_open_is_tightened_and_its_parent_is_not(
    tmp_path: Path, loose_umask: None
) -> None:
    store = tmp_path / "vectors"
    store.mkdir(mode=0o755)
    store.chmod(0o775)
    tmp_path.chmod(0o755)

    make_state_dir(store)

    assert (_mode(store), _mode(tmp_path)) == (0o700, 0o755)


def test_a_data_dir_is_tightened_only_once_it_holds_the_stacks_state(tmp_path: Path, loose_umask: None) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)

    make_data_dir(data_dir)
    assert _mode(data_dir) == 0o755  # the operator's dir (a mount point, say) until the stack has used it

    (data_dir / "telemetry").mkdir()
    make_data_dir(data_dir)
    assert _mode(data_dir) == 0o700


def test_a_missing_data_dir_is_created_private(tmp_path: Path, loose_umask: None) -> None:
    make_data_dir(tmp_path / "home" / ".local" / "share" / "mcp-stack")

    assert _mode(tmp_path / "home" / ".local" / "share" / "mcp-stack") == 0o700
    assert _mode(tmp_path / "home") == 0o700
