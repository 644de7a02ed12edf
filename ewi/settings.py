"""EWI's one configuration: every ``EWI_*`` setting, with its type, default and description.

This module is the only reader of ``EWI_*`` environment variables. ``get_settings()`` reads the
environment at call time (not import time), so tests and the CLI can point a process at another
EWI_HOME or DSN without reloading modules. A value of the wrong type stops startup with a message
that names the setting (``ewi.errors``); the README's settings table is generated from this class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Every EWI setting. Field ``x`` is read from ``EWI_X``."""

    model_config = SettingsConfigDict(env_prefix="EWI_", extra="ignore", case_sensitive=False)

    # --- state and warehouse --------------------------------------------------------------------
    home: Path | None = Field(
        None, description="Folder for EWI's state (embedded warehouse, landing, logs). Default: .ewi in the project."
    )
    landing_dir: Path | None = Field(
        None, description="Folder where source systems drop extracts. Default: EWI_HOME/landing."
    )
    warehouse_dsn: str | None = Field(
        None,
        description="DSN of an external PostgreSQL warehouse; unset runs the embedded server.",
    )
    warehouse_db: str = Field("ewi", description="Name of the warehouse database.")

    # --- dashboard and local users --------------------------------------------------------------
    dashboard_users: str = Field(
        "",
        description="Dashboard users given in the environment: a JSON list of {username, role, password_hash}"
        " (read-only, beside the users file), or the path of the users file. Empty: none from the"
        " environment; the users file is EWI_HOME/dashboard/users.json, written by `ewi dashboard add-user`.",
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


def get_settings() -> Settings:
    """The settings as the environment says now (read afresh on every call)."""
    return Settings()
