"""The CLI as outside tools drive it: JSON lines on stdout and the documented exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ewi.cli import EXIT_GATE, EXIT_OK, EXIT_USAGE, main
from tests import extracts


@pytest.fixture(scope="module")
def cli_db(ewi_home):
    os.environ["EWI_WAREHOUSE_DB"] = "ewi_cli_tests"
    yield
    os.environ.pop("EWI_WAREHOUSE_DB", None)


def run(capsys, *argv) -> tuple[int, list[dict]]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_ingest_prints_one_json_object_per_file_and_exits_0(cli_db, tmp_path, capsys):
    a = extracts.write(tmp_path, "contacts", "2023-W05")
    b = extracts.write(tmp_path, "referrals", "2023-W05")
    code, lines = run(capsys, "ingest", str(a), str(b), "--json")
    assert code == EXIT_OK
    assert [line["status"] for line in lines] == ["published", "published"]
    for line in lines:
        assert {"file", "source", "batch_id", "status", "rows", "reason", "failed_checks"} <= set(line)
        assert line["rows"] == 40

    code, lines = run(capsys, "ingest", str(a), "--json")
    assert code == EXIT_OK and lines[0]["status"] == "duplicate"


def test_ingest_exits_3_when_a_file_is_quarantined_or_rejected(cli_db, tmp_path, capsys):
    rows = extracts.rows_for("contacts", "2023-W06")
    rows[0]["home_area_code"] = "2081C9999"
    bad = extracts.write(tmp_path, "contacts", "2023-W06", rows=rows)
    code, lines = run(capsys, "ingest", str(bad), "--json")
    assert code == EXIT_GATE and lines[0]["status"] == "quarantined"
    assert lines[0]["failed_checks"]

    code, lines = run(capsys, "quarantine", "list", "--json")
    assert code == EXIT_OK and lines[0]["batch_id"]

    empty = extracts.write(tmp_path, "contacts", "2023-W07", content=b"")
    code, lines = run(capsys, "ingest", str(empty), "--json")
    assert code == EXIT_GATE and lines[0]["status"] == "rejected"


def test_usage_errors_exit_2(cli_db, tmp_path, capsys):
    assert main(["ingest", str(tmp_path / "nope.csv")]) == EXIT_USAGE
    assert main(["ingest", str(tmp_path)]) == EXIT_USAGE
    assert main(["ingest"]) == EXIT_USAGE
    assert main(["no-such-command"]) == EXIT_USAGE
    assert main(["quarantine", "release", "somebatch"]) == EXIT_USAGE


def test_console_script_and_warehouse_url(ewi_home):
    ewi = os.path.join(os.path.dirname(sys.executable), "ewi")
    out = subprocess.run([ewi, "warehouse", "url"], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.startswith("postgresql://")


def test_dbt_env_lets_dbt_reach_the_warehouse(ewi_home):
    """`make lint` evaluates `ewi warehouse dbt-env` in its shell so that sqlfluff's dbt templater
    reaches the warehouse through dbt_project/profiles.yml: dbt's own connection check must pass."""
    from ewi import config

    bin_dir = os.path.dirname(sys.executable)
    script = (f'eval "$("{bin_dir}/ewi" warehouse dbt-env)" && "{bin_dir}/dbt" debug --connection '
              f'--project-dir "{config.DBT_PROJECT_DIR}" --profiles-dir "{config.DBT_PROJECT_DIR}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith("EWI_PG_")}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and "All checks passed" in out.stdout, out.stdout[-2000:]
