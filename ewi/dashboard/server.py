"""Serving the dashboard with uvicorn."""

from __future__ import annotations

import sys


def serve(host: str = "127.0.0.1", port: int = 8050) -> None:
    import uvicorn

    from ewi.dashboard import users
    from ewi.dashboard.app import create_app

    app = create_app()
    if not users.load_users():
        print(f"No dashboard users yet ({users.users_file()}): nobody can log in. "
              "Create them with ewi.dashboard.users.ensure_demo_users() or users.set_user().",
              file=sys.stderr, flush=True)
    shown_host = f"[{host}]" if ":" in host else host
    print(f"Dashboard: http://{shown_host}:{port}/", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
