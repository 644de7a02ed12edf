"""The dashboard web application (FastAPI, server-rendered Jinja2 pages, SVG charts): the factory
that puts the security rules (ewi.dashboard.security) and the routers (ewi.dashboard.routes)
together.

Coordinators see published, disclosure-controlled indicators only; auditors also see every
delivery and its checks.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ewi.dashboard.routes import audit, charts, exports, login, pages, signals
from ewi.dashboard.security import access
from ewi.dashboard.views import HERE, forbidden_page


def create_app() -> FastAPI:
    app = FastAPI(title="EWI dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    access.install(app, forbidden_page)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for routes in (login, pages, charts, exports, audit, signals):
        app.include_router(routes.router)
    return app
