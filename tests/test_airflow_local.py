"""The local Airflow's configuration: one Airflow home per EWI_HOME, metadata in PostgreSQL on the
warehouse server, secrets generated once and kept private."""

from __future__ import annotations

import stat

from ewi import airflow_local, cli, config


def test_environment_points_airflow_at_ewi(warehouse_ready):
    env = airflow_local.airflow_env()
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
    first = airflow_local.airflow_env()
    second = airflow_local.airflow_env()
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
    assert airflow_local.down() == 0
    assert "nothing running" in capsys.readouterr().out
