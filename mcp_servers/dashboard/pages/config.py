"""Live configuration: the runtime keys with their effective values and audit trail; admins change them."""

import json
import logging
from typing import Any, Final

from pydantic_core import to_jsonable_python
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mcp_servers.dashboard.pages._page import form_fields, page, render, wants_json
from mcp_servers.dashboard.state import state_of
from mcp_servers.dashboard.store import Session
from mcp_servers.shared.errors import InvalidRequest
from mcp_servers.shared.runtime_config import RUNTIME_KEYS, RuntimeConfigStore, RuntimeKey, apply_overrides

logger = logging.getLogger(__name__)

_AUDIT_ROWS = 30
_MAX_JSON_CHARS: Final = 64 * 1024


async def _config_page(request: Request, session: Session, *, message: str | None = None) -> Response:
    state = state_of(request)
    config = RuntimeConfigStore(state.running().database)
    stored = await config.load()
    effective = apply_overrides(state.settings, {k: v for k, v in stored.items() if k in RUNTIME_KEYS})
    rows = [
        {
            "key": key,
            "label": item.label,
            "description": item.description,
            "value": _shown(item, getattr(getattr(effective, item.section), item.field)),
            "structured": item.structured,
            "overridden": key in stored,
        }
        for key, item in RUNTIME_KEYS.items()
    ]
    audit = await config.audit(limit=_AUDIT_ROWS)
    return render(request, "config.html", session, rows=rows, audit=audit, message=message)


def _shown(item: RuntimeKey, value: Any) -> Any:
    """A structured value as the JSON text the form edits (secrets masked)."""
    return json.dumps(to_jsonable_python(value)) if item.structured else value


def _parsed(key: str, text: str) -> Any:
    """A submitted field: JSON for a structured key, text otherwise (the settings model converts it)."""
    if not RUNTIME_KEYS[key].structured:
        return text
    if len(text) > _MAX_JSON_CHARS:
        raise InvalidRequest(f"{key}: at most {_MAX_JSON_CHARS} characters")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{key}: not valid JSON ({exc.msg} at character {exc.pos})") from None


async def config_view(request: Request, session: Session) -> Response:
    return await _config_page(request, session)


async def config_update(request: Request, session: Session) -> Response:
    state = state_of(request)
    settings = state.settings
    config = RuntimeConfigStore(state.running().database)
    submitted = {key: _parsed(key, value) for key, value in (await form_fields(request)).items() if key in RUNTIME_KEYS}
    stored = await config.load()
    current = apply_overrides(settings, {k: v for k, v in stored.items() if k in RUNTIME_KEYS})
    wanted = apply_overrides(current, submitted)  # validates every field before anything is written
    changed = []
    for key, item in RUNTIME_KEYS.items():
        new = getattr(getattr(wanted, item.section), item.field)
        if key in submitted and new != getattr(getattr(current, item.section), item.field):
            old, new = await config.set(settings, key, new, actor=session.username)
            changed.append({"key": key, "old": old, "new": new})
    logger.info("dashboard config changed", extra={"username": session.username, "keys": len(changed)})
    if wants_json(request):
        return JSONResponse({"changed": changed})
    return await _config_page(request, session, message=f"{len(changed)} setting(s) changed")


ROUTES: list[BaseRoute] = [
    Route("/config", page(config_view), methods=["GET"]),
    Route("/config", page(config_update, admin=True), methods=["POST"]),
]
