"""The local Airflow's configuration: one Airflow home per EWI_HOME, metadata in PostgreSQL on the
warehouse server, secrets generated once and kept private."""

from __future__ import annotations

import stat

from ewi import cli, config
from ewi.orchestration import airflow_env, local_airflow


def test_environment_points_airflow_at_ewi(warehouse_ready):
    env = airflow_env.airflow_env()
    home = config.ewi_home() / "airflow"
    assert env["AIRFLOW_HOME"] == str(home)
    assert env["EWI_HOME"] == str(config.ewi_home())
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(config.DAGS_DIR)
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert "/airflow?" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"].startswith("postgresql+psycopg://")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"


def test_secrets_are_generated_once_and_private(warehouse_ready):
    first = airflow_env.airflow_env()
    second = airflow_env.airflow_env()
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"):
        assert first[key] and first[key] == second[key]
    home = config.ewi_home() / "airflow"
    for name in ("ewi-secrets.json", "simple_auth_manager_passwords.json"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600


def test_env_command_prints_shell_exports(warehouse_ready, capsys):
    assert cli.main(["airflow", "env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("export ") for line in lines)
    assert any(line.startswith("export AIRFLOW_HOME=") for line in lines)


def test_down_with_nothing_running(warehouse_ready, capsys):
    assert local_airflow.down() == 0
    assert "nothing running" in capsys.readouterr().out


def test_lineage_goes_to_a_jsonl_file_unless_an_url_is_set(warehouse_ready, monkeypatch):
    import json

    monkeypatch.delenv("OPENLINEAGE_URL", raising=False)
    env = airflow_env.airflow_env()
    assert env["AIRFLOW__OPENLINEAGE__DISABLED"] == "False"
    transport = json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    assert transport == {"type": "file", "append": True,
                         "log_file_path": str(config.ewi_home() / "lineage" / "events.jsonl")}
    monkeypatch.setenv("OPENLINEAGE_URL", "http://127.0.0.1:5000")
    transport = json.loads(airflow_env.airflow_env()["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    assert transport["type"] == "http" and transport["url"] == "http://127.0.0.1:5000"


def test_celery_executor_adds_a_worker_on_its_own_queue(warehouse_ready, monkeypatch):
    monkeypatch.setenv("EWI_AIRFLOW_EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("EWI_AIRFLOW_CELERY_QUEUE", "ewi-q1")
    env = airflow_env.airflow_env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == "ewi-q1"
    names = [s.name for s in airflow_env.services()]
    assert names[-1] == "celery-worker" and "triggerer" in names


def test_watcher_and_notifier_settings_reach_airflow(warehouse_ready, monkeypatch):
    monkeypatch.setenv("EWI_LANDING_SETTLE_SECONDS", "3")
    monkeypatch.setenv("EWI_NOTIFIER", "webhook")
    monkeypatch.setenv("EWI_NOTIFY_WEBHOOK_URL", "http://127.0.0.1:1/x")
    monkeypatch.setenv("EWI_AIRFLOW_DB_DSN", "postgresql://postgres@127.0.0.1:5432/elsewhere")
    env = airflow_env.airflow_env()
    assert env["EWI_LANDING_SETTLE_SECONDS"] == "3"
    assert env["EWI_NOTIFIER"] == "webhook" and env["EWI_NOTIFY_WEBHOOK_URL"] == "http://127.0.0.1:1/x"
    assert "/elsewhere" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
