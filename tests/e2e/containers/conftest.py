"""Container e2e fixtures: the stack image, built once per session on the Debian base image."""

import pytest

from tests.e2e.containers.engine import build_stack_image


@pytest.fixture(scope="session")
def stack_image() -> str:
    return build_stack_image()
