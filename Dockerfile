# One image for every EWI service (Airflow components, dashboard, init). It installs the same
# pinned lock as the Makefile's virtualenv, so a container runs exactly what the tests ran.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    EWI_HOME=/var/lib/ewi AIRFLOW_HOME=/var/lib/ewi/airflow \
    PATH=/opt/ewi/.venv/bin:$PATH

RUN apt-get update && apt-get install -y --no-install-recommends libpq5 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 50000 ewi

WORKDIR /opt/ewi
COPY requirements.lock pyproject.toml README.md ./
RUN python -m venv .venv && .venv/bin/pip install --no-cache-dir -r requirements.lock
COPY ewi ./ewi
COPY dags ./dags
COPY dbt_project ./dbt_project
COPY expectations ./expectations
RUN .venv/bin/pip install --no-cache-dir --no-deps . \
    && mkdir -p /var/lib/ewi && chown -R ewi /var/lib/ewi /opt/ewi/dbt_project

USER ewi
