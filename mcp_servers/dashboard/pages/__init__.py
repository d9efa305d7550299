"""The dashboard's routes, one module per page; each module's `ROUTES` binds its handlers to paths.

Every route except `/login`, `/health`, `/ready` and `/static/*` needs a session (`_page.page`); every POST also
needs the session's CSRF token and a same-origin request; config changes and restarts need an admin. `/ready` is
for machines (a bearer key, as on every server).
"""

from starlette import routing

from mcp_servers.dashboard.pages import auth, config, learning, overview, probes, search, services, tasks

__all__ = ["routes"]


def routes() -> list[routing.BaseRoute]:
    """Every page route of the dashboard (static files are mounted by the app)."""
    return [
        *probes.ROUTES,
        *auth.ROUTES,
        *overview.ROUTES,
        *learning.ROUTES,
        *tasks.ROUTES,
        *search.ROUTES,
        *config.ROUTES,
        *services.ROUTES,
    ]
