"""One configuration (ewi.settings): the only reader of EWI_* variables in ewi/ and dags/; every
setting typed, with a default and a description; a bad value stops the CLI, the dashboard and the
DAG files' import with a message naming the variable (exit 2); secrets never printed."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ewi import config, settings

ROOT = config.PROJECT_ROOT
EWI = Path(sys.executable).with_name("ewi")


# --- the only reader --------------------------------------------------------------------------


def _is_os_attr(node: ast.AST, names: set[str], attr: str) -> bool:
    """`os.<attr>`, or the bare name when `from os import <attr>` brought it in."""
    if isinstance(node, ast.Attribute) and node.attr == attr:
        return isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id == attr and attr in names


def _ewi_name(node: ast.AST | None) -> str | None:
    """The EWI_* variable a key names: a constant, or an f-string starting with EWI_."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("EWI_"):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant) \
            and str(node.values[0].value).startswith("EWI_"):
        return str(node.values[0].value) + "..."
    return None


def _picks_ewi(test: ast.AST) -> bool:
    """A filter that keeps EWI_ names (`k.startswith("EWI_")`); one that leaves them out (`not
    k.startswith(...)`, `k not in (...)`: a child process's environment without them) reads none."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return False
    if isinstance(test, ast.Compare) and all(isinstance(op, ast.NotIn) for op in test.ops):
        return False
    return any(_ewi_name(n) for n in ast.walk(test))


def _loop_filters(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.comprehension):
        return list(node.ifs)
    return [n.test for n in ast.walk(node) if isinstance(n, ast.If)]


def environment_reads(root: Path) -> list[str]:
    """Every place in root/ewi and root/dags, ewi/settings.py aside, that reads an EWI_* variable
    from the process environment: os.environ[...] / .get / os.getenv / `in os.environ`, with an
    EWI_ name or a name computed at run time, and loops over os.environ that pick EWI_ names.
    Writing one (configuring a child process) is allowed."""
    found = []
    files = sorted((root / "ewi").rglob("*.py")) + sorted((root / "dags").glob("*.py"))
    for path in files:
        rel = path.relative_to(root).as_posix()
        if rel == "ewi/settings.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        from_os = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "os"
                   for a in n.names}

        in_file: list[tuple[int, str]] = []

        def environ(node, from_os=from_os):
            return _is_os_attr(node, from_os, "environ")

        for node in ast.walk(tree):
            key, what = None, None
            if isinstance(node, ast.Subscript) and environ(node.value) and isinstance(node.ctx, ast.Load):
                key, what = node.slice, "os.environ[...]"
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and environ(node.func.value) \
                    and node.func.attr in ("get", "setdefault") and node.args:
                key, what = node.args[0], f"os.environ.{node.func.attr}"
            elif isinstance(node, ast.Call) and _is_os_attr(node.func, from_os, "getenv") and node.args:
                key, what = node.args[0], "os.getenv"
            elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) \
                    and any(environ(c) for c in node.comparators):
                key, what = node.left, "in os.environ"
            elif isinstance(node, (ast.For, ast.comprehension)):
                source = node.iter.func.value if isinstance(node.iter, ast.Call) and \
                    isinstance(node.iter.func, ast.Attribute) else node.iter
                if environ(source) and any(_picks_ewi(t) for t in _loop_filters(node)):
                    in_file.append((getattr(node, "lineno", node.iter.lineno),
                                    "a loop over os.environ picking EWI_ names"))
                continue
            if what is None:
                continue
            name = _ewi_name(key)
            if name is None and isinstance(key, ast.Constant):
                continue  # another program's variable (AIRFLOW_HOME, XDG_RUNTIME_DIR, USER)
            in_file.append((node.lineno, f"{what}({name or 'a name computed at run time'})"))
        found += [f"{rel}:{line}: {what}" for line, what in sorted(in_file)]
    return found


def test_no_module_but_settings_reads_an_ewi_variable():
    reads = environment_reads(ROOT)
    assert reads == [], ("read EWI_* through ewi.settings.get_settings() (add a field to Settings), "
                         "not from os.environ:\n" + "\n".join(reads))


def test_the_check_finds_each_kind_of_read(tmp_path):
    (tmp_path / "ewi" / "sub").mkdir(parents=True)
    (tmp_path / "dags").mkdir()
    (tmp_path / "ewi" / "settings.py").write_text('import os\nos.environ.get("EWI_HOME")\n')  # allowed there
    (tmp_path / "ewi" / "sub" / "bad.py").write_text(
        "import os\nfrom os import environ, getenv\n"
        'a = os.environ["EWI_A"]\n'
        'b = os.environ.get("EWI_B", "1")\n'
        'c = os.getenv("EWI_C")\n'
        'd = "EWI_D" in os.environ\n'
        'e = environ.get(f"EWI_{b}_URL")\n'
        "f = getenv(a)\n"
        'g = {k: v for k, v in os.environ.items() if k.startswith("EWI_G")}\n'
        'i = {k: v for k, v in os.environ.items() if not k.startswith("EWI_")}\n'  # leaves them out
        "for k in os.environ:\n"
        '    if k.startswith(("AIRFLOW_CONN_", "EWI_J")):\n'
        "        pass\n"
        'os.environ["EWI_HOME"] = "/tmp/x"\n'  # a write: allowed
        'h = os.environ.get("AIRFLOW_HOME")\n'  # not ours: allowed
    )
    (tmp_path / "dags" / "d.py").write_text('import os\nX = os.environ.get("EWI_LANDING_DIR")\n')
    reads = environment_reads(tmp_path)
    assert [r.split(": ", 1)[1] for r in reads] == [
        "os.environ[...](EWI_A)", "os.environ.get(EWI_B)", "os.getenv(EWI_C)", "in os.environ(EWI_D)",
        "os.environ.get(EWI_...)", "os.getenv(a name computed at run time)",
        "a loop over os.environ picking EWI_ names", "a loop over os.environ picking EWI_ names",
        "os.environ.get(EWI_LANDING_DIR)",
    ], reads
    assert reads[0].startswith("ewi/sub/bad.py:3:") and reads[-1].startswith("dags/d.py:2:")


# --- every setting: type, default, description ---------------------------------------------------


def test_every_setting_has_a_type_a_default_and_a_description():
    fields = settings.Settings.model_fields
    assert len(fields) >= 35
    for name, info in fields.items():
        assert info.annotation is not None, name
        assert not info.is_required(), f"{name} has no default"
        assert info.description and len(info.description) > 15, f"{name} has no description"


def test_passwords_keys_and_dsns_are_secrets():
    for name in settings.Settings.model_fields:
        if any(word in name for word in ("password", "secret", "dsn", "webhook_url", "broker")):
            assert settings.is_secret(name), name
    shown = repr(settings.Settings(warehouse_dsn="postgresql://u:hunter2-pw@h/db"))
    assert "hunter2-pw" not in shown


def test_values_are_typed_and_read_at_call_time(monkeypatch):
    monkeypatch.setenv("EWI_LANDING_MANIFEST_SOURCES", "school_absence, referrals")
    monkeypatch.setenv("EWI_DASHBOARD_HTTPS", "1")
    monkeypatch.setenv("EWI_NOTIFIER", " Webhook ")
    monkeypatch.setenv("EWI_AIRFLOW_PORT", "")  # empty counts as unset (compose passes ${X:-})
    current = settings.get_settings()
    assert current.landing_manifest_sources == ("school_absence", "referrals")
    assert current.dashboard_https is True and current.notifier == "webhook" and current.airflow_port == 8080
    monkeypatch.setenv("EWI_AIRFLOW_PORT", "9001")
    assert settings.get_settings().airflow_port == 9001


@pytest.mark.parametrize(("variable", "value", "words"), [
    ("EWI_DASHBOARD_SESSION_SECONDS", "abc", "valid integer"),
    ("EWI_DISK_RESERVE_MB", "-1", "greater than or equal to 0"),
    ("EWI_AIRFLOW_EXECUTOR", "KubernetesExecutor", "LocalExecutor"),
    ("EWI_DASHBOARD_HTTPS", "maybe", "boolean"),
    ("EWI_AIRFLOW_PORT", "70000", "less than or equal to 65535"),
])
def test_a_bad_value_names_the_variable(monkeypatch, variable, value, words):
    monkeypatch.setenv(variable, value)
    with pytest.raises(settings.SettingsError) as caught:
        settings.get_settings()
    assert variable in str(caught.value) and words in str(caught.value)


# --- a bad value stops startup (real processes) -------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EWI_")}
    env.update({"EWI_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT), **extra})
    return env


def _ewi(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(EWI), *args], env=_env(tmp_path, **extra), capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(("variable", "value"), [
    ("EWI_DASHBOARD_SESSION_SECONDS", "abc"),
    ("EWI_DISK_RESERVE_MB", "-1"),
])
def test_the_cli_stops_with_exit_2_naming_the_setting(tmp_path, variable, value):
    out = _ewi(tmp_path, "warehouse", "url", **{variable: value})
    assert out.returncode == 2, out.stderr
    assert variable in out.stderr and "ewi settings table" in out.stderr
    assert out.stdout == ""
    assert not (tmp_path / "home" / "warehouse").exists()  # stopped before starting anything


def test_the_cli_answers_a_bad_setting_in_json(tmp_path):
    missing = tmp_path / "nothing.csv"
    out = _ewi(tmp_path, "ingest", "--json", str(missing), EWI_LANDING_SETTLE_SECONDS="soon")
    assert out.returncode == 2
    answer = json.loads(out.stdout)
    assert answer["code"] == "usage" and answer["exit_code"] == 2 and answer["command"] == "ingest"
    assert "EWI_LANDING_SETTLE_SECONDS" in answer["reason"]


def test_a_secret_is_never_printed(tmp_path):
    secret = "hunter2-not-for-logs"
    out = _ewi(tmp_path, "warehouse", "url", EWI_WAREHOUSE_DSN=f"postgresql://ewi:{secret}@db/ewi",
               EWI_DASHBOARD_SECRET=secret, EWI_DASHBOARD_SESSION_SECONDS="abc")
    assert out.returncode == 2 and secret not in out.stdout + out.stderr
    shown = _ewi(tmp_path, "settings", "show", EWI_WAREHOUSE_DSN=f"postgresql://ewi:{secret}@db/ewi",
                 EWI_DASHBOARD_SECRET=secret, EWI_AIRFLOW_PORT="9001")
    assert shown.returncode == 0, shown.stderr
    assert secret not in shown.stdout
    lines = dict(line.split("  # ")[0].split("=", 1) for line in shown.stdout.splitlines())
    assert lines["EWI_WAREHOUSE_DSN"] == "**********" and lines["EWI_DASHBOARD_SECRET"] == "**********"
    assert lines["EWI_AIRFLOW_PORT"] == "9001" and lines["EWI_DASHBOARD_DB_PASSWORD"] == ""
    assert set(lines) == {settings.variable(f) for f in settings.Settings.model_fields}


def test_settings_check(tmp_path):
    good = _ewi(tmp_path, "settings", "check")
    assert good.returncode == 0 and "configuration valid" in good.stdout
    bad = _ewi(tmp_path, "settings", "check", EWI_TRANSFORM_MAX_WAIT_SECONDS="-5", EWI_NOTIFIER="pigeon")
    assert bad.returncode == 2
    assert "EWI_TRANSFORM_MAX_WAIT_SECONDS" in bad.stderr and "EWI_NOTIFIER" in bad.stderr
    typo = _ewi(tmp_path, "settings", "check", EWI_DASHBORD_SECRET="x", EWI_PG_HOST="derived-for-dbt")
    assert typo.returncode == 2 and "EWI_DASHBORD_SECRET is no EWI setting" in typo.stderr
    assert "EWI_PG_HOST" not in typo.stderr


def test_the_dashboard_does_not_start_with_a_bad_setting(tmp_path):
    from ewi import ports

    port = ports.free_port(18650, "127.0.0.1")
    out = _ewi(tmp_path, "dashboard", "--port", str(port), EWI_DASHBOARD_HTTPS="maybe")
    assert out.returncode == 2
    assert "EWI_DASHBOARD_HTTPS" in out.stderr
    assert ports.is_free(port, "127.0.0.1")


def test_a_dag_file_does_not_import_with_a_bad_setting(tmp_path):
    """The DAG processor's own loader (DagBag): each EWI DAG file fails to import, and its import
    error names the variable."""
    script = (
        "import json; from airflow.dag_processing.dagbag import DagBag; "
        f"bag = DagBag(dag_folder={str(config.DAGS_DIR)!r}, safe_mode=False); "
        "print(json.dumps({'errors': bag.import_errors, 'dags': sorted(bag.dag_ids)}, default=str))"
    )
    env = _env(tmp_path, EWI_LANDING_POLL_SECONDS="0", AIRFLOW_HOME=str(tmp_path / "airflow"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    dag_files = {p.name for p in config.DAGS_DIR.glob("*.py")}
    assert {Path(f).name for f in result["errors"]} == dag_files and result["dags"] == []
    for error in result["errors"].values():
        assert "EWI_LANDING_POLL_SECONDS" in error and "greater than 0" in error


# --- the README's table, .env.example and the compose file ------------------------------------


def test_the_readme_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert settings.README_TABLE_START in readme and settings.README_TABLE_END in readme
    assert settings.readme_with_table(readme) == readme, (
        "README.md's configuration table differs from ewi/settings.py: run `ewi settings table --readme`")
    for field in settings.Settings.model_fields:
        assert f"| `{settings.variable(field)}` |" in readme, field


def test_the_table_check_fails_on_a_stale_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    stale = readme.replace("| `EWI_DASHBOARD_HTTPS` |", "| `EWI_DASHBOARD_HTTP` |")
    assert stale != readme and settings.readme_with_table(stale) == readme


def test_settings_table_prints_markdown(tmp_path):
    out = _ewi(tmp_path, "settings", "table", EWI_DASHBOARD_SESSION_SECONDS="abc")  # works with bad values
    assert out.returncode == 0
    assert out.stdout == settings.markdown_table()
    assert out.stdout.startswith("| variable | type | default | meaning |")


def _env_example() -> dict[str, str]:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, re.M))


def _compose_ewi_names() -> set[str]:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    keys = set(re.findall(r"^\s+(EWI_[A-Z0-9_]*):", text, re.M))  # what the containers receive
    return keys | set(re.findall(r"(?<!\$)\$\{(EWI_[A-Z0-9_]*)", text))  # what compose interpolates


def test_every_ewi_variable_of_the_deployment_is_a_setting():
    known = {settings.variable(f) for f in settings.Settings.model_fields}
    in_env = {name for name in _env_example() if name.startswith("EWI_")}
    in_compose = _compose_ewi_names()
    assert in_env and in_compose
    assert in_env - known == set(), "in .env.example but not a setting (EWI_* is for EWI's own settings)"
    assert in_compose - known == set(), "in docker-compose.yml but not a setting"


def test_secrets_are_marked_in_env_example():
    """A setting that is a secret is CHANGE-ME (or empty) in .env.example, and what .env.example
    marks CHANGE-ME is a secret in Settings."""
    for name, value in _env_example().items():
        if not name.startswith("EWI_"):
            continue
        field = name.removeprefix("EWI_").lower()
        if settings.is_secret(field):
            assert value in ("CHANGE-ME", ""), name
        if value == "CHANGE-ME":
            assert settings.is_secret(field), f"{name} is CHANGE-ME but not a SecretStr setting"


# --- the warehouse from an Airflow Connection -------------------------------------------------

_WHICH_WAREHOUSE = """
import json, sys
if sys.argv[1] == "airflow":
    import airflow.sdk  # as in an Airflow task, DAG processor or triggerer
from ewi import config, warehouse
dsn = config.configured_dsn()
answer = {"dsn": dsn, "airflow": "airflow" in sys.modules}
if dsn and sys.argv[2] == "connect":
    import psycopg
    with psycopg.connect(warehouse.dsn()) as conn:
        answer["database"] = conn.execute("select current_database()").fetchone()[0]
print(json.dumps(answer))
"""


def _which_warehouse(tmp_path: Path, mode: str, connect: bool = False, **extra: str) -> dict:
    env = _env(tmp_path, AIRFLOW_HOME=str(tmp_path / "airflow"), **extra)
    out = subprocess.run([sys.executable, "-c", _WHICH_WAREHOUSE, mode, "connect" if connect else "-"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def warehouse_connection(ewi_home) -> tuple[str, str]:
    """The test warehouse as an Airflow Connection in JSON (AIRFLOW_CONN_EWI_WAREHOUSE), and the
    database it names: one of its own, so finding it proves the Connection was used."""
    import psycopg
    from psycopg import conninfo

    from ewi import warehouse

    database = "ewi_settings_airflow_conn"
    parts = conninfo.conninfo_to_dict(warehouse.dsn(database))
    with psycopg.connect(warehouse.dsn(database)):
        pass
    connection = {"conn_type": "postgres", "host": parts.get("host"), "port": int(parts.get("port") or 5432),
                  "login": parts.get("user"), "password": parts.get("password") or None, "schema": database,
                  "extra": {"connect_timeout": "10"}}
    return json.dumps(connection), database


def test_inside_airflow_the_warehouse_comes_from_the_connection(tmp_path, warehouse_connection):
    connection, database = warehouse_connection
    found = _which_warehouse(tmp_path, "airflow", connect=True, AIRFLOW_CONN_EWI_WAREHOUSE=connection)
    assert found["airflow"] and f"dbname={database}" in found["dsn"] and "connect_timeout=10" in found["dsn"]
    assert found["database"] == database  # a real connection through Airflow's Connection API
    assert not (tmp_path / "home" / "warehouse").exists()  # no embedded server was started


def test_ewi_warehouse_dsn_comes_before_the_connection(tmp_path, warehouse_connection):
    connection, _ = warehouse_connection
    found = _which_warehouse(tmp_path, "airflow", AIRFLOW_CONN_EWI_WAREHOUSE=connection,
                             EWI_WAREHOUSE_DSN="postgresql://ewi@db.example:5432/ewi")
    assert found["dsn"] == "postgresql://ewi@db.example:5432/ewi"


def test_outside_airflow_or_without_the_connection_the_embedded_server(tmp_path, warehouse_connection):
    connection, _ = warehouse_connection
    outside = _which_warehouse(tmp_path, "cli", AIRFLOW_CONN_EWI_WAREHOUSE=connection)
    assert outside == {"dsn": None, "airflow": False}  # a command does not pay for importing Airflow
    assert _which_warehouse(tmp_path, "airflow")["dsn"] is None  # no such Connection


def test_the_variables_ewi_writes_for_dbt_are_known_as_no_settings():
    from ewi import warehouse

    written = set(warehouse.dbt_env("host=db.example port=5432 user=ewi password=pw dbname=ewi"))
    assert written <= set(settings.NOT_SETTINGS)
    assert not written & {settings.variable(f) for f in settings.Settings.model_fields}


_PROBE_DAG = '''
import json, os, pendulum
from airflow.sdk import dag, task

@dag(dag_id="ewi_settings_probe", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def probe():
    @task
    def which_warehouse():
        import psycopg
        from ewi import config, warehouse
        with psycopg.connect(warehouse.dsn()) as conn:
            database = conn.execute("select current_database()").fetchone()[0]
        with open(os.environ["PROBE_OUT"], "w") as fh:
            json.dump({"dsn": config.configured_dsn(), "database": database}, fh)
    which_warehouse()

probe()
'''


def test_inside_an_airflow_task_the_connection_from_airflow_s_database(tmp_path, warehouse_connection):
    """A real task run (`airflow dags test`, the task runner asking its supervisor for the
    Connection), the Connection kept in Airflow's metadata database, not in the environment."""
    connection, database = warehouse_connection
    airflow = Path(sys.executable).with_name("airflow")
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "probe.py").write_text(_PROBE_DAG, encoding="utf-8")
    env = _env(tmp_path, AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__DAGS_FOLDER=str(tmp_path / "dags"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False", PROBE_OUT=str(tmp_path / "probe.json"))
    env.pop("AIRFLOW_CONN_EWI_WAREHOUSE", None)
    for args in (["db", "migrate"], ["connections", "add", "ewi_warehouse", "--conn-json", connection],
                 ["dags", "test", "ewi_settings_probe"]):
        out = subprocess.run([str(airflow), *args], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-2000:])
    found = json.loads((tmp_path / "probe.json").read_text(encoding="utf-8"))
    assert found["database"] == database and f"dbname={database}" in found["dsn"]
    assert not (tmp_path / "home" / "warehouse").exists()  # no embedded server was started
