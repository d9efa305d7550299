"""Rules on AIDB input that the declared tool types cannot say: query text, metadata keys and values.

Search, find_tools and the store paths share them (prompts reach search with undeclared arguments, too).
"""

import re
from collections.abc import Mapping

from mcp_servers.aidb.models import FilterValue, MetadataValue
from mcp_servers.shared.errors import InvalidRequest

MAX_QUERY_CHARS = 2000
METADATA_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
MAX_METADATA_KEYS = 32
MAX_METADATA_STRING = 1000


def check_query(query: str) -> str:
    """The stripped query; InvalidRequest if it is blank or longer than MAX_QUERY_CHARS."""
    stripped = query.strip()
    if not stripped:
        raise InvalidRequest("query is empty; pass the words or question to search for")
    if len(stripped) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"query is {len(stripped)} characters; shorten it to at most {MAX_QUERY_CHARS}")
    return stripped


def check_filters(filters: Mapping[str, FilterValue] | None) -> None:
    """Metadata filter keys are 1-64 letters, digits or underscores."""
    for key in filters or {}:
        if not METADATA_KEY.fullmatch(key):
            raise InvalidRequest(f"filter key {key[:70]!r} is invalid: use 1-64 letters, digits or '_'")


def check_metadata(metadata: Mapping[str, MetadataValue] | None) -> dict[str, MetadataValue]:
    """Metadata as a plain dict; InvalidRequest for bad keys, too many keys or over-long strings."""
    result = dict(metadata or {})
    if len(result) > MAX_METADATA_KEYS:
        raise InvalidRequest(f"metadata has {len(result)} keys; at most {MAX_METADATA_KEYS} are allowed")
    for key, value in result.items():
        if not METADATA_KEY.fullmatch(key):
            raise InvalidRequest(f"metadata key {key[:70]!r} is invalid: use 1-64 letters, digits or '_'")
        if isinstance(value, str) and len(value) > MAX_METADATA_STRING:
            raise InvalidRequest(f"metadata {key!r} is longer than {MAX_METADATA_STRING} characters")
    return result


# One project rule for every tool: an omitted project is "default" (where store_document puts a document stored
# without one), and "*" reads every project. Only reads accept "*".
DEFAULT_PROJECT = "default"
ALL_PROJECTS = "*"


def project_to_store(project: str | None) -> str:
    """The project a write goes to; InvalidRequest for "*" (a document lives in one project)."""
    if project == ALL_PROJECTS:
        raise InvalidRequest(f"project {ALL_PROJECTS!r} means every project and is only for reading; name one project")
    return project or DEFAULT_PROJECT


def project_to_read(project: str | None) -> str | None:
    """The project a read is limited to, or None for every project ("*")."""
    if project == ALL_PROJECTS:
        return None
    return project or DEFAULT_PROJECT
