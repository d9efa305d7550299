"""docs/configuration.md is generated from the settings models and committed up to date."""

from pydantic import BaseModel

from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.config_docs import DOC_PATH, render


def test_committed_configuration_reference_is_up_to_date() -> None:
    # On failure run: python -m mcp_servers.shared.config_docs
    assert DOC_PATH.read_text(encoding="utf-8") == render()


def test_every_setting_has_a_row_named_by_its_environment_variable() -> None:
    text = render()
    for name, field in StackSettings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            variables = [f"MCP_STACK_{name.upper()}__{key.upper()}" for key in section.model_fields]
        else:
            variables = [f"MCP_STACK_{name.upper()}"]
        for variable in variables:
            assert f"| `{variable}` |" in text, variable
