"""Every name a package lists in `__all__` exists: the public surface other packages may import."""

import importlib
import pkgutil

import pytest

import mcp_servers

PACKAGES = sorted(info.name for info in pkgutil.walk_packages(mcp_servers.__path__, "mcp_servers.") if info.ispkg)


def test_the_root_package_exports_only_the_version() -> None:
    submodules = {info.name for info in pkgutil.iter_modules(mcp_servers.__path__)}
    public = {name for name in vars(mcp_servers) if not name.startswith("_")} - submodules
    assert public == set()
    assert isinstance(mcp_servers.__version__, str)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_names_exist(package: str) -> None:
    module = importlib.import_module(package)
    exported = getattr(module, "__all__", [])
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == []
    assert len(exported) == len(set(exported))
