"""The application around the pages: dashboard users, the chart cache a build refreshes, and the
health check."""

from __future__ import annotations

import os


def test_passwords_are_scrypt_hashed_and_demo_users_created_once(tmp_path, monkeypatch):
    from ewi.dashboard import users

    h = users.hash_password("secret")
    assert h.startswith("scrypt$") and "secret" not in h
    assert users.verify_password("secret", h) and not users.verify_password("Secret", h)
    monkeypatch.setenv("EWI_DASHBOARD_USERS", str(tmp_path / "users.json"))
    created = users.ensure_demo_users()
    assert set(created) == {"coordinator", "auditor"}
    assert users.authenticate("auditor", created["auditor"]).role == "auditor"
    assert users.ensure_demo_users() == {}
    assert (tmp_path / "users.json").stat().st_mode & 0o077 == 0


def test_refresh_clears_rendered_charts(coordinator):
    from ewi.dashboard import charts, refresh

    coordinator.get("/chart/overview/contacts.svg")
    assert charts._cache
    refresh()
    assert not charts._cache
    # refresh() in another process (the Airflow task) moves the stamp; this process notices
    coordinator.get("/chart/overview/contacts.svg")
    stamp = charts._stamp_file()
    later = stamp.stat().st_mtime + 5
    os.utime(stamp, (later, later))
    charts.cached(("probe",), lambda: b"")
    assert list(charts._cache) == [("probe",)]


def test_health_endpoint_needs_no_login_and_shows_no_data():
    from fastapi.testclient import TestClient

    from ewi.dashboard.app import create_app

    response = TestClient(create_app()).get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
