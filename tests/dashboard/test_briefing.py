"""The weekly briefing PDF on a warehouse built by the real dbt models and the real Farrington task (the
signal tests' warehouse: 120 weeks, three rises): `ewi briefing` writes it, `pdftotext` reads the open
signals in it and no count of 1-4, `pdftoppm` renders its pages (kept under the pytest basetemp,
artifacts/briefing-*.png), and a coordinator downloads it from the dashboard, logged as an export.

"No figure 1-4" means: once the figures that are not counts of people are taken out, i.e. ISO weeks
(2026-W07), dates and times, decimals (rates, expected values, scores: always with a decimal
comma or point), the page number ("Sida 1 av 2") and the years of history and "per 1 000" the
published explanations and labels name, no number from 1 to 4 stands alone in the text.
`test_the_count_check_finds_a_small_count` shows that the check catches one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.dashboard.helpers import rows
from tests.dashboard.test_signals import app, signal_warehouse  # noqa: F401  (the signal tests' warehouse)

pytestmark = pytest.mark.slow

NOT_COUNTS = [
    r"\d{4}-W\d{2}",                        # ISO weeks
    r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2})?",    # dates, the time it was made
    r"\d+(?:[ \u00a0,.]\d{3})*[,.]\d+",     # decimals: rates, expected values, thresholds, scores
    r"(Sida|Page) \d+ (av|of) \d+",          # the page number
    r"\d+ års historik|\d+ year\(s\) of history|i stället för \d+|instead of \d+",  # years of history
    r"per 1[ \u00a0,]000",                  # the unit of a rate
    r"\(\d+ (veckor|weeks?)\)",               # an indicator's window ("Unga med orosanmälan (3 veckor)")
]
SMALL_COUNT = re.compile(r"(?<![\w<])[1-4](?![\w])")


def small_counts(pdf_text: str) -> list[str]:
    """The numbers 1-4 standing alone once the figures that are not counts of people are taken out."""
    for pattern in NOT_COUNTS:
        pdf_text = re.sub(pattern, " ", pdf_text)
    return [m.group(0) for m in SMALL_COUNT.finditer(pdf_text)]


def _poppler(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.skip(f"{tool} is not installed (make system-deps: poppler-utils)")
    return path


def _text(pdf) -> str:
    return subprocess.run([_poppler("pdftotext"), "-layout", str(pdf), "-"], check=True, capture_output=True,
                          text=True).stdout


def test_the_count_check_finds_a_small_count():
    assert small_counts("Sida 1 av 2  2026-W04  3,2 %  per 1 000  Bygger på 1 års historik") == []
    assert small_counts("Kontakter: 3 observerade") == ["3"]
    assert small_counts("<5 observerade, 12 förväntade, Unga med orosanmälan (3 veckor)") == []


def test_the_briefing_lists_the_open_signals_and_no_small_count(signal_warehouse, tmp_path):  # noqa: F811
    from ewi import cli

    out = tmp_path / "briefing.pdf"
    assert cli.main(["briefing", "--out", str(out)]) == 0
    text = _text(out)
    open_signals = rows(signal_warehouse["dsn"], "select area_name, indicator, first_week from "
                                                 "published.area_signals where state <> 'closed'")
    assert open_signals, "the fixture's rises open signals"
    flat = " ".join(text.split())
    labels = {"contacts": "Kontakter polis/fält", "referrals": "Orosanmälningar", "multi_signal": "Flera signaler",
              "invalid_absence": "Ogiltig frånvaro", "chronic_absence": "Hög frånvaro"}
    for s in open_signals:
        assert f"{s['area_name']} – {labels[s['indicator']]}" in flat
        assert s["first_week"] in flat
    assert "Veckobriefing" in flat and "<5 = färre än fem personer" in flat  # Swedish, the suppression note
    assert re.search(r"\d,\d", flat), "rates are in the text, so the count check has figures to look at"
    assert small_counts(text) == [], "a count of 1-4 in the briefing"

    english = tmp_path / "briefing-en.pdf"
    latest = rows(signal_warehouse["dsn"], "select max(last_alert_week) as w from published.area_signals")[0]["w"]
    assert cli.main(["briefing", "--out", str(english), "--week", latest, "--lang", "en"]) == 0
    text_en = _text(english)
    assert f"week {latest}" in text_en and "fewer than five people" in text_en
    assert small_counts(text_en) == []

    # every page rendered, kept as test artifacts; the first page is looked at by a person
    artifacts = signal_warehouse["artifacts"]
    artifacts.mkdir(parents=True, exist_ok=True)
    subprocess.run([_poppler("pdftoppm"), "-png", "-r", "80", str(out), str(artifacts / "briefing")], check=True)
    pages = sorted(artifacts.glob("briefing-*.png"))
    assert 1 <= len(pages) <= 2 and all(p.stat().st_size > 10_000 for p in pages)


def test_a_week_that_is_no_iso_week_is_a_usage_error(signal_warehouse, tmp_path, capsys):  # noqa: F811
    from ewi import cli

    assert cli.main(["briefing", "--out", str(tmp_path / "b.pdf"), "--week", "2026-W60"]) == 2
    assert "ISO week, YYYY-Www" in capsys.readouterr().err
    assert not (tmp_path / "b.pdf").exists()


def test_a_coordinator_downloads_the_briefing_logged_as_an_export(signal_warehouse, app):  # noqa: F811
    from tests.dashboard.helpers import client, login

    coordinator = login(app, "coord")
    before = rows(signal_warehouse["dsn"], "select count(*) as n from audit.access_log "
                                           "where action = 'export_briefing'")[0]["n"]
    answer = coordinator.get("/export/briefing.pdf")
    assert answer.status_code == 200 and answer.content.startswith(b"%PDF")
    assert answer.headers["content-type"] == "application/pdf"
    logged = rows(signal_warehouse["dsn"], "select username, detail from audit.access_log "
                                           "where action = 'export_briefing' order by id")
    assert len(logged) == before + 1 and logged[-1]["username"] == "coord"
    anonymous = client(app).get("/export/briefing.pdf", follow_redirects=False)
    assert anonymous.status_code in (303, 401) and not anonymous.content.startswith(b"%PDF")


@pytest.fixture(scope="module")
def after_publish(signal_warehouse):  # noqa: F811
    """What the transform DAG runs after a publish, on the signal warehouse; $EWI_HOME/dbt-docs removed
    afterwards when it was not there before (other modules' lineage tests expect to write it)."""
    from ewi.dashboard import lineage
    from ewi.orchestration import transform_tasks

    docs = lineage.docs_dir()
    existed = docs.exists()
    try:
        yield transform_tasks.after_publish()
    finally:
        if not existed:
            shutil.rmtree(docs, ignore_errors=True)


def test_a_publish_leaves_dbt_docs_and_the_briefings_served_to_auditors(after_publish, app):  # noqa: F811
    """What the transform DAG runs after a publish (and so `make demo`): dbt's docs site with its
    manifest and catalog where the lineage page reads them, and the week's briefing in both
    languages; the docs site is served to auditors only, never cached, never framed."""
    from ewi.dashboard import lineage
    from tests.dashboard.helpers import client, login

    done = after_publish
    assert done["dbt_docs"]["success"], done
    assert {"index.html", "manifest.json", "catalog.json"} <= {p.name for p in lineage.docs_dir().iterdir()}
    assert [Path(p).name[-6:] for p in done["briefings"]] == ["sv.pdf", "en.pdf"]
    assert all(Path(p).read_bytes().startswith(b"%PDF") for p in done["briefings"])

    auditor = login(app, "audit")
    lineage_page = auditor.get("/audit/lineage")
    assert 'href="/audit/dbt-docs/index.html"' in lineage_page.text and 'id="no-manifest"' not in lineage_page.text
    site = auditor.get("/audit/dbt-docs/index.html")
    assert site.status_code == 200 and "dbt" in site.text.lower()
    assert site.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in site.headers["content-security-policy"]
    manifest = auditor.get("/audit/dbt-docs/manifest.json")
    assert manifest.status_code == 200 and "model.ewi.area_signals" in manifest.json()["nodes"]
    assert auditor.get("/audit/dbt-docs/..%2F..%2Fusers.json").status_code == 404
    assert auditor.get("/audit/dbt-docs/../dashboard/refreshed_at").status_code == 404
    assert login(app, "coord").get("/audit/dbt-docs/index.html").status_code == 403
    assert client(app).get("/audit/dbt-docs/index.html", follow_redirects=False).status_code == 401


def test_browser_dbt_docs_for_an_auditor_and_the_briefing_for_a_coordinator(after_publish, signal_warehouse,  # noqa: F811
                                                                           browser):
    """In Chromium, under the dashboard's real headers: the auditor opens the dbt docs site from the
    lineage page and reads a model; the coordinator downloads the briefing from the overview.
    Screenshots and the download under the pytest basetemp, artifacts/."""
    from tests.dashboard.helpers import PASSWORDS, serve, stop

    artifacts = signal_warehouse["artifacts"]
    artifacts.mkdir(parents=True, exist_ok=True)
    with open(artifacts / "briefing-dashboard-stderr.txt", "w") as err:
        proc, url = serve(dict(os.environ), err)
    try:
        for user in ("audit", "coord"):
            context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            page = context.new_page()
            blocked = []
            page.on("console", lambda m, blocked=blocked: blocked.append(m.text) if "script" in m.text.lower()
                    and "Content Security Policy" in m.text else None)
            page.goto(url + "/?lang=en")
            page.fill("#username", user)
            page.fill("#password", PASSWORDS[user])
            page.click("#login-submit")
            page.wait_for_load_state()
            if user == "audit":
                page.goto(url + "/audit/lineage?lang=en")
                page.click("#dbt-docs-link")
                page.goto(page.url + "#!/model/model.ewi.area_signals")
                page.wait_for_selector("text=One row per signal", timeout=30_000)
                page.screenshot(path=str(artifacts / "dbt-docs-area_signals.png"))
                assert blocked == []
            else:
                with page.expect_download() as download:
                    page.click("#export-briefing")
                saved = artifacts / download.value.suggested_filename
                download.value.save_as(saved)
                assert saved.read_bytes().startswith(b"%PDF") and saved.name.startswith("ewi_briefing_")
            context.close()
    finally:
        stop(proc)
