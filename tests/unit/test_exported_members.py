"""Every package declares `__all__`, and it lists exactly the public names the package holds."""

import importlib
import inspect
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
def test_all_lists_exactly_the_public_names_of_the_package(package: str) -> None:
    module = importlib.import_module(package)
    assert "__all__" in vars(module), f"{package} must declare __all__ (an empty list if it exports nothing)"
    exported = module.__all__
    assert isinstance(exported, list) and all(isinstance(name, str) for name in exported)
    assert len(exported) == len(set(exported))
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == []
    # Like httpx's test: a public name in the package namespace that __all__ leaves out is an undeclared export.
    public = {name for name, value in vars(module).items() if not name.startswith("_") and not inspect.ismodule(value)}
    assert public == set(exported)
