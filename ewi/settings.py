"""EWI's one configuration: every ``EWI_*`` setting, with its type, default and description.

This module is the only reader of ``EWI_*`` environment variables (tests/test_settings.py fails
naming any other module that reads one). ``get_settings()`` reads the environment at call time (not
import time), so tests and the CLI can point a process at another EWI_HOME or DSN without reloading
modules. An empty variable counts as unset (compose passes ``${X:-}`` as empty strings). A value of
the wrong type stops startup with a message that names the setting (``SettingsError``: the CLI
answers it with exit 2, a DAG file fails to import with it, the dashboard does not start). Secrets
are ``SecretStr``: they print as ``**********`` and are shown nowhere.

The README's configuration table is generated from this class (``ewi settings table``), and a test
fails when the two differ.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "EWI_"

#: The Airflow Connection the warehouse DSN may come from, inside Airflow (after EWI_WAREHOUSE_DSN).
AIRFLOW_WAREHOUSE_CONN_ID = "ewi_warehouse"


def _comma_separated(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


#: A list given as "a, b, c" in the environment (not JSON: the form operators already use).
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_separated)]


class SettingsError(ValueError):
    """A setting has a value EWI cannot use. The message names the variable(s) and what is wrong,
    never a secret's value."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("configuration: " + "; ".join(problems))


class Settings(BaseSettings):
    """Every EWI setting. Field ``x`` is read from ``EWI_X``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False,
                                      env_ignore_empty=True, frozen=True)

    # --- state and warehouse --------------------------------------------------------------------
    home: Path | None = Field(
        None, description="Folder for EWI's state: embedded warehouse data, landing folder, Airflow home, "
        "GX Data Docs, dbt docs, lineage events, logs. Unset: `.ewi/` in the checkout."
    )
    landing_dir: Path | None = Field(
        None, description="Folder where source systems drop extracts. Unset: `$EWI_HOME/landing`."
    )
    warehouse_dsn: SecretStr | None = Field(
        None,
        description="libpq DSN of an external PostgreSQL warehouse, e.g. `postgresql://ewi:…@db:5432/ewi`. "
        "Unset: inside Airflow the Connection `ewi_warehouse` if it exists, else the embedded server.",
    )
    warehouse_db: str = Field(
        "ewi", min_length=1,
        description="Name of the warehouse database on the server (created when missing; tests use their "
        "own). With EWI_WAREHOUSE_DSN and this unset, the DSN's own database.",
    )
    warehouse_start_timeout: float | None = Field(
        None, gt=0,
        description="Seconds a command waits for the embedded server to start (crash recovery included). "
        "Unset: 60 s + 1 s per 20 MB of data.",
    )
    disk_reserve_mb: float = Field(
        64, ge=0, description="Free space (MB) a load must leave on the embedded warehouse's disk "
        "(for the audit records, the checkpoint and the files beside them)."
    )

    # --- dashboard and local users --------------------------------------------------------------
    dashboard_users: str = Field(
        "",
        description="Dashboard users given in the environment: a JSON list of {username, role, password_hash}"
        " (read-only, beside the users file), or the path of the users file. Empty: none from the"
        " environment; the users file is EWI_HOME/dashboard/users.json, written by `ewi dashboard add-user`.",
    )
    dashboard_secret: SecretStr | None = Field(
        None, description="Signing key of the dashboard's session cookies. "
        "Unset: a random key kept in `$EWI_HOME/dashboard/session.key`.",
    )
    dashboard_session_seconds: int = Field(
        8 * 3600, gt=0, description="Seconds of inactivity after which a dashboard session ends.",
    )
    dashboard_https: bool = Field(
        False, description="The dashboard is served over HTTPS (behind a proxy): session cookies are "
        "sent over HTTPS only.",
    )
    dashboard_url: str = Field(
        "http://127.0.0.1:8050", description="The dashboard's address, for the links in notifications."
    )
    dashboard_db_password: SecretStr | None = Field(
        None, description="Password of the read-only login role `ewi_dashboard` on a deployed server "
        "(`ewi warehouse set-role-passwords`). Unset: no password (the embedded server trusts its socket).",
    )
    auditor_db_password: SecretStr | None = Field(
        None, description="Password of the read-only login role `ewi_auditor` (as EWI_DASHBOARD_DB_PASSWORD).",
    )

    # --- single sign-on (OpenID Connect) --------------------------------------------------------
    oidc_issuer: str | None = Field(
        None,
        description="Issuer URL of the OpenID Connect provider (Entra ID, Keycloak, ...); its discovery"
        " document is read from ISSUER/.well-known/openid-configuration. Unset: no single sign-on.",
    )
    oidc_client_id: str | None = Field(None, description="The dashboard's client id at the provider.")
    oidc_client_secret: SecretStr | None = Field(
        None, description="The client secret (secret); unset: a public client, PKCE only."
    )
    oidc_redirect_uri: str | None = Field(
        None,
        description="The callback URL registered at the provider, e.g. https://ewi.example/login/sso/callback."
        " Unset: built from the request (right unless a proxy changes the host or scheme).",
    )
    oidc_scopes: str = Field("openid profile email", description="Scopes asked for (space-separated).")
    oidc_username_claim: str = Field(
        "preferred_username", description="ID-token claim that names the user (falls back to sub)."
    )
    oidc_role_claim: str = Field(
        "groups", description="ID-token claim (a string or a list) whose values give the EWI role."
    )
    oidc_role_map: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description='JSON map from role-claim values to EWI roles, e.g. {"ewi-coordinators": "coordinator",'
        ' "ewi-auditors": "auditor"}. Empty: the values coordinator and auditor themselves. A user with no'
        " mapped value is refused; one with both roles is an auditor.",
    )

    @field_validator("oidc_role_map", mode="before")
    @classmethod
    def _role_map_json(cls, value):
        # compose passes an unset map as an empty string: no map, not a JSON error
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    # --- retention and erasure ------------------------------------------------------------------
    retention_margin_weeks: int = Field(
        13, ge=0,
        description="Weeks pseudonymous rows (raw, intermediate, delivered files) are kept beyond the longest "
                    "look-back a rebuild or an alert needs (Farrington's b years and window, the 15 weeks of rows one week's counts read).",
    )
    retention_pseudonymous_weeks: int | None = Field(
        None, ge=15,
        description="Weeks of pseudonymous rows kept, counted back from the current week; unset: the look-back "
                    "plus EWI_RETENTION_MARGIN_WEEKS (135 weeks with the default alert parameters).",
    )
    retention_quarantine_days: int = Field(
        30, ge=1, description="Days a quarantined or stuck pending batch (rows and delivered file) is kept."
    )
    retention_gx_days: int = Field(
        400, ge=1, description="Days Great Expectations validation results and their Data Docs pages are kept."
    )
    retention_log_days: int = Field(90, ge=1, description="Days Airflow task logs and dbt logs are kept.")
    retention_lineage_days: int = Field(
        400, ge=1, description="Days lineage events (EWI_HOME/lineage/events.jsonl) are kept."
    )


    # --- backup and audit trail -----------------------------------------------------------------
    audit_chain_key: SecretStr | None = Field(
        None,
        description="Secret that keys the audit trail's hash chain; every EWI process writing to one "
        "warehouse needs the same. Default: a random key kept in EWI_HOME/audit/chain.key.",
    )
    pg_bin_dir: Path | None = Field(
        None,
        description="Folder of pg_dump and pg_restore for ewi backup/restore, matching the server's "
        "major version. Default: the embedded server's own (the pgserver package).",
    )

    # --- detection ------------------------------------------------------------------------------

    # --- landing folder and builds (Airflow) ----------------------------------------------------
    landing_settle_seconds: float = Field(
        5.0, ge=0, description="Seconds a delivered file must stay unchanged before it is ingested.",
    )
    landing_manifest_sources: CommaList = Field(
        (), description="Sources (comma-separated) whose every delivery comes with a manifest: their "
        "files wait for it.",
    )
    landing_manifest_wait_seconds: float = Field(
        900.0, ge=0, description="Seconds a file of a manifest source waits for a manifest that does not come.",
    )
    landing_poll_seconds: float = Field(
        2.0, gt=0, description="Seconds between two looks of the landing watcher at the folder.",
    )
    landing_retry_after_seconds: float = Field(
        900.0, ge=0, description="Seconds before the watcher announces again a ready file that was not ingested.",
    )
    transform_quiet_seconds: float = Field(
        5.0, ge=0, description="A build waits until no batch was decided for this many seconds "
        "(deliveries that land together end in one build).",
    )
    transform_max_wait_seconds: float = Field(
        120.0, ge=0, description="Longest wait (seconds) for that quiet before a build starts anyway.",
    )

    # --- local Airflow ---------------------------------------------------------------------------
    airflow_port: int = Field(
        8080, ge=1, le=65535, description="Port of the local Airflow's API server and UI (`ewi airflow up`; "
        "the next free one when taken).",
    )
    airflow_executor: Literal["LocalExecutor", "CeleryExecutor"] = Field(
        "LocalExecutor", description="Executor of the local Airflow.",
    )
    airflow_celery_broker: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="Celery broker URL (CeleryExecutor). Default: `redis://127.0.0.1:6379/0`.",
    )
    airflow_celery_queue: str = Field("ewi", min_length=1, description="Celery queue of EWI's tasks.")
    airflow_db_dsn: SecretStr | None = Field(
        None, description="libpq DSN of Airflow's metadata database. Unset: database `airflow` on the "
        "warehouse server.",
    )
    lineage_namespace: str = Field(
        "postgres://ewi-warehouse", description="OpenLineage namespace of the warehouse's tables.",
    )

    # --- notifications ---------------------------------------------------------------------------
    notifier: Literal["log", "smtp", "webhook"] = Field(
        "log", description="Where pipeline failures are notified: `log`, `smtp` or `webhook`.",
    )
    notify_smtp_host: str | None = Field(
        None, description="Mail server of the `smtp` notifier: host or host:port (port 25 by default).",
    )
    notify_email_to: CommaList = Field(
        (), description="Recipients (comma-separated) of the `smtp` notifier.",
    )
    notify_email_from: str = Field(
        "ewi@localhost", description="Sender address of every mail EWI sends.",
    )
    notify_smtp_starttls: bool = Field(False, description="The `smtp` notifier starts TLS.")
    notify_smtp_user: str | None = Field(None, description="Login of the `smtp` notifier at its mail server.")
    notify_smtp_password: SecretStr | None = Field(None, description="Password of EWI_NOTIFY_SMTP_USER.")
    notify_webhook_url: SecretStr | None = Field(
        None, description="URL that receives a JSON POST per failure (the `webhook` notifier).",
    )
    notify_smtp_conn_id: str = Field(
        "smtp_default", description="Airflow Connection of the mail server for the people notices "
        "(signals, data engineers).",
    )
    signal_email_to: CommaList = Field(
        (), description="Coordinators' addresses (comma-separated) for new and changed signals.",
    )
    signal_webhook_url: SecretStr | None = Field(
        None, description="Incoming webhook (chat channel) for new and changed signals.",
    )
    engineer_email_to: CommaList = Field(
        (), description="Data engineers' addresses (comma-separated) for refused deliveries and failed builds.",
    )
    engineer_webhook_url: SecretStr | None = Field(
        None, description="Incoming webhook for the data engineers' notices.",
    )

    # --- command line ----------------------------------------------------------------------------
    debug: bool = Field(False, description="Print the traceback of a failure (as `ewi --debug`).")

    @field_validator("notifier", mode="before")
    @classmethod
    def _notifier_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


def variable(field: str) -> str:
    """The environment variable of a field: ``home`` -> ``EWI_HOME``."""
    return ENV_PREFIX + field.upper()


def is_secret(field: str) -> bool:
    annotation = Settings.model_fields[field].annotation
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


def _problem(error: dict) -> str:
    field = str(error["loc"][0]) if error.get("loc") else ""
    name = variable(field) if field in Settings.model_fields else (field or "a setting")
    message = str(error.get("msg", "is not valid"))
    if field in Settings.model_fields and not is_secret(field) and isinstance(error.get("input"), str):
        shown = error["input"] if len(error["input"]) <= 40 else error["input"][:37] + "..."
        return f"{name}={shown!r} is not valid: {message}"
    return f"{name} is not valid: {message}"


#: The last settings built, with the EWI_* variables they were built from: validating takes ~7 ms,
#: and some paths ask for a setting in loops. The environment is still read on every call.
_last: tuple[tuple[tuple[str, str], ...], Settings] | None = None


def get_settings() -> Settings:
    """The settings as the environment says now (read afresh on every call). Raises SettingsError,
    naming each bad variable, when a value cannot be used."""
    global _last
    key = tuple(sorted((k.upper(), v) for k, v in os.environ.items() if k[:4].upper() == ENV_PREFIX))
    last = _last
    if last is not None and last[0] == key:
        return last[1]
    try:
        settings = Settings()
    except ValidationError as exc:
        raise SettingsError([_problem(e) for e in exc.errors()]) from None
    _last = (key, settings)
    return settings


def was_set(settings: Settings, field: str) -> bool:
    """Whether the environment gave this field (an empty variable does not count)."""
    return field in settings.model_fields_set


def environment() -> dict[str, str]:
    """The EWI_* variables of Settings fields that are set (not empty), as given: what a child
    process (Airflow's services) must be handed to see the same configuration."""
    names = {variable(f) for f in Settings.model_fields}
    return {k.upper(): v for k, v in os.environ.items() if k.upper() in names and v}


#: EWI_* names that are not settings: written by EWI for dbt's profiles.yml (warehouse.dbt_env()),
#: and the tests' own server.
NOT_SETTINGS = ("EWI_PG_HOST", "EWI_PG_PORT", "EWI_PG_USER", "EWI_PG_PASSWORD", "EWI_PG_DBNAME",
                "EWI_TEST_WAREHOUSE_DSN")


def unknown_variables() -> list[str]:
    """EWI_* variables in the environment that are no setting (a typo, or one that was renamed):
    ignored by EWI, so `ewi settings check` names them."""
    names = {variable(f) for f in Settings.model_fields} | set(NOT_SETTINGS)
    return sorted(k.upper() for k in os.environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in names)


#: How long an answer of Airflow's about the Connection is reused: inside a task each question is a
#: round trip to the API server (and the warehouse's DSN is asked for many times per task).
AIRFLOW_CONNECTION_TTL_S = 60.0
_airflow_answer: tuple[float, str | None, str | None] | None = None  # (when, AIRFLOW_CONN_ value, DSN)
_airflow_lock = threading.Lock()


def airflow_warehouse_dsn() -> str | None:
    """The warehouse DSN from Airflow's Connection `ewi_warehouse`, when this process runs inside
    Airflow (a task, the DAG processor, the triggerer: Airflow is already imported) and the
    Connection exists (AIRFLOW_CONN_EWI_WAREHOUSE, the metadata database or a secrets backend).
    Outside Airflow None, without importing it (a second or more of start-up for every command).
    Airflow's answer is reused for AIRFLOW_CONNECTION_TTL_S seconds unless the variable changes."""
    global _airflow_answer
    if "airflow" not in sys.modules:
        return None
    in_env = os.environ.get("AIRFLOW_CONN_" + AIRFLOW_WAREHOUSE_CONN_ID.upper())
    with _airflow_lock:  # one question at a time: the task's channel to its supervisor is one socket
        answer = _airflow_answer
        if answer is not None and answer[1] == in_env and time.monotonic() - answer[0] < AIRFLOW_CONNECTION_TTL_S:
            return answer[2]
        dsn = _ask_airflow()
        _airflow_answer = (time.monotonic(), in_env, dsn)
        return dsn


def _ask_airflow() -> str | None:
    try:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:  # an Airflow without the task SDK: no Connection API to ask
        return None
    try:
        conn = BaseHook.get_connection(AIRFLOW_WAREHOUSE_CONN_ID)
    except AirflowNotFoundException:
        # Not defined: the embedded server. A backend that fails or denies access is raised: a
        # deployment that meant an external warehouse must not quietly get an embedded one.
        return None
    from psycopg import conninfo

    params: dict[str, Any] = {"host": conn.host, "port": conn.port, "user": conn.login,
                              "password": conn.password, "dbname": conn.schema}
    # libpq options kept in the Connection's extra (sslmode, sslrootcert, ...)
    params.update({k: v for k, v in (conn.extra_dejson or {}).items() if isinstance(v, (str, int))})
    return conninfo.make_conninfo(**{k: v for k, v in params.items() if v not in (None, "")})


# --- the README's table ---------------------------------------------------------------------------


def _default_text(field: str) -> str:
    default = Settings.model_fields[field].get_default(call_default_factory=True)
    if default is None:
        return "unset"
    if default in ("", {}, ()):
        return "empty"
    if isinstance(default, SecretStr):
        default = default.get_secret_value()
    if isinstance(default, bool):
        return "`1`" if default else "`0`"
    if isinstance(default, tuple):
        return "`" + ",".join(default) + "`"
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return f"`{default}`"


def _type_text(field: str) -> str:
    annotation = Settings.model_fields[field].annotation
    args = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    names = []
    for arg in (a for a in args if a is not type(None)):
        if get_origin(arg) is Literal:
            names.append(" \\| ".join(f"`{v}`" for v in get_args(arg)))
        elif get_origin(arg) is tuple:
            names.append("comma-separated list")
        elif get_origin(arg) is dict:
            names.append("JSON object")
        else:
            names.append({bool: "boolean (`1`/`0`, `true`/`false`)", SecretStr: "secret", Path: "path",
                          float: "number", int: "integer"}.get(arg, "text"))
    return ", ".join(names)


def markdown_table() -> str:
    """The README's configuration table, one row per setting in the order of the class."""
    lines = ["| variable | type | default | meaning |", "| --- | --- | --- | --- |"]
    for field, info in Settings.model_fields.items():
        lines.append(f"| `{variable(field)}` | {_type_text(field)} | {_default_text(field)} | "
                     f"{(info.description or '').replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"


#: Where the generated table stands in the README.
README_TABLE_START = "<!-- settings table: generated from ewi/settings.py by `ewi settings table --readme` -->"
README_TABLE_END = "<!-- end of settings table -->"


def readme_with_table(readme: str) -> str:
    """The README's text with the table between its markers generated anew."""
    start = readme.index(README_TABLE_START) + len(README_TABLE_START)
    end = readme.index(README_TABLE_END, start)
    return readme[:start] + "\n" + markdown_table() + readme[end:]
