"""The deployment files, tested as far as this machine allows: no Docker engine runs here, so the
compose file is validated by docker-compose's own parser (Debian's package) and checked for what
usually breaks a first `docker compose up`: missing build contexts, mounts and variables."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def documented_variables() -> set[str]:
    return {m[1] for m in re.finditer(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M)}


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose is not installed")
@pytest.mark.parametrize("profile", [None, "celery"])
def test_compose_file_validates(profile):
    cmd = ["docker-compose", "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE)]
    if profile:
        cmd += ["--profile", profile]
    out = subprocess.run([*cmd, "config", "--services"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    services = set(out.stdout.split())
    expected = {"warehouse-db", "airflow-db", "ewi-init", "airflow-api-server", "airflow-scheduler",
                "airflow-dag-processor", "airflow-triggerer", "dashboard"}
    if profile == "celery":
        expected |= {"redis", "airflow-worker"}
    assert expected <= services


def test_every_referenced_variable_is_documented_in_env_example():
    referenced = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))  # $$ escapes
    assert referenced, "the compose file should take its settings from .env"
    assert referenced <= documented_variables(), referenced - documented_variables()


def test_no_real_secret_is_committed():
    for line in ENV_EXAMPLE.read_text().splitlines():
        if re.match(r"^[A-Z_]*(PASSWORD|SECRET|FERNET_KEY)=", line):
            assert line.split("=", 1)[1] in ("CHANGE-ME", ""), line


def test_build_contexts_dockerfiles_and_bind_mounts_exist():
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build:
            context = ROOT / build["context"]
            assert context.is_dir(), name
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            source = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", source)
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source}"


def test_every_service_has_a_health_check():
    for name, service in compose()["services"].items():
        assert "healthcheck" in service, name


def test_dockerfile_installs_the_same_lock_as_the_virtualenv():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.lock" in dockerfile
    assert "-r requirements.lock" in (ROOT / "Makefile").read_text()
