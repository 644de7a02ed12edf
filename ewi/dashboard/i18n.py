"""Labels in Swedish (the default: the coordinators' language) and English, and number formats.

Mostly the two languages' label tables: its length is text, not logic."""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal

LANGS = ("sv", "en")
SUPPRESSED = "<5"
MISSING = "–"

INDICATORS = ("chronic_absence", "invalid_absence", "referrals", "contacts", "multi_signal")
SHARE_INDICATORS = ("chronic_absence", "invalid_absence")

TEXT = {
    "sv": {
        "title": "Tidiga signaler – Borlänge",
        "overview": "Översikt",
        "audit": "Granskning",
        "dbt_tests": "dbt-tester",
        "login": "Logga in",
        "logout": "Logga ut",
        "username": "Användarnamn",
        "password": "Lösenord",
        "login_failed": "Fel användarnamn eller lösenord.",
        "login_throttled": "För många misslyckade inloggningar. Vänta en stund och försök igen.",
        "login_sso": "Logga in med kommunens konto (single sign-on)",
        "login_or": "eller med ett lokalt konto:",
        "sso_no_role": "Ditt konto har ingen roll i EWI. Be kommunens IT-avdelning om behörighet.",
        "sso_refused": "Inloggningen via single sign-on godtogs inte. Försök igen.",
        "sso_unreachable": "Inloggningstjänsten svarar inte just nu. Försök igen senare.",
        "week": "Vecka",
        "area": "Område",
        "areas": "Områden",
        "municipality": "Kommunen",
        "indicator": "Indikator",
        "show": "Visa",
        "rate": "Andel/takt",
        "numerator": "Täljare",
        "denominator": "Nämnare",
        "rolling_12": "Rullande 12 veckor",
        "last_year": "Samma vecka i fjol",
        "alert": "Larm",
        "alerts": "Larm",
        "no_data": "Inga publicerade data ännu.",
        "freshness": "Datafärskhet",
        "source": "Källa",
        "last_period": "Senast publicerad period",
        "published_at": "Publicerad",
        "gate": "Kontroll",
        "stale": "inaktuell",
        "stale_banner": "Data från {source} är inaktuella: senaste publicerade vecka är {period}.",
        "quarantine_banner": "Senaste leveransen från {source} stoppades i kontrollen ({status}); "
                             "visade siffror bygger på tidigare leveranser.",
        "export_csv": "Exportera CSV",
        "export_png": "Exportera PNG",
        "latest_week": "Senaste hela vecka",
        "legend_muni": "Färg och tecken: jämfört med kommunen (++ rött = minst 50 % högre, + orange = minst "
                       "15 % högre, − blått = minst 15 % lägre).",
        "time_range": "Tidsperiod",
        "range_weeks": "{n} veckor",
        "range_from": "Från vecka",
        "range_to": "till vecka",
        "range_shown": "Visar {first} – {last}",
        "values_table": "Värden per vecka som tabell",
        "level_high": "minst 50 % högre än kommunen",
        "level_elevated": "minst 15 % högre än kommunen",
        "level_low": "minst 15 % lägre än kommunen",
        "alert_cell": "larm",
        "legend_trend": "Pil: jämfört med områdets egna 12 föregående veckor (▲ minst 20 % högre, "
                        "▼ minst 20 % lägre).",
        "legend_suppressed": "<5 = färre än fem personer; värdet visas inte av sekretesskäl.",
        "grid": "Områdeskarta (schematisk)",
        "small_multiples": "{indicator} per område över tid",
        "weekly_table": "Veckovärden",
        "forbidden": "Du har inte behörighet till den här sidan.",
        "not_found": "Sidan finns inte.",
        "batches": "Leveranser",
        "chain_holds": "Granskningsspårets hashkedja höll",
        "chain_broken": "Granskningsspårets hashkedja var bruten",
        "chain_verified_at": "senast kontrollerad",
        "chain_records": "poster kontrollerade",
        "chain_never": "Granskningsspårets hashkedja har inte kontrollerats än (ewi audit verify)",
        "file": "Fil",
        "period": "Period",
        "received": "Mottagen",
        "rows": "Rader",
        "rows_published": "Publicerade rader",
        "status": "Status",
        "reason": "Orsak",
        "superseded_by": "Ersatt av",
        "checks": "Kontroller",
        "data_docs": "GX Data Docs",
        "expectation": "Förväntan",
        "column": "Kolumn",
        "success": "Godkänd",
        "observed": "Observerat",
        "unexpected": "Avvikande",
        "no_dbt_results": "Inga dbt-testresultat finns i lagret ännu.",
        "role": "Roll",
        "language": "English",
        "explanation": "Förklaring",
        "method": "Metod",
        "observed_value": "Observerat",
        "expected": "Förväntat",
        "threshold": "Tröskel",
        "back": "Tillbaka",
        "lineage": "Härkomst",
        "method_comparison": "Larmmetoder",
        "method_comparison_legend": "Varje larmmetods bedömning av veckan, för de områden och indikatorer där någon "
                                    "metod larmar. Översikten, områdessidorna, exporterna och diagrammen visar bara "
                                    "standardmetodens larm ({method}, märkt *).",
        "no_alerts": "Ingen metod larmar denna vecka.",
        "lineage_graph": "Från leveranser genom dbt-modellerna till instrumentpanelerna",
        "no_manifest": "Ingen dbt-manifest.json hittades i {path}. Skapa den efter en körning med "
                       "`python -c \"from ewi import transform; transform.docs()\"` (eller `make demo`).",
        "manifest_generated": "dbt-manifest skapad {at}",
        "task_runs": "Körda uppgifter (OpenLineage)",
        "no_task_runs": "Inga OpenLineage-händelser i {path} ännu (Airflows OpenLineage-leverantör skriver dem där).",
        "unreadable_events": "{n} händelser eller filer kunde inte läsas.",
        "job": "Uppgift",
        "state": "Tillstånd",
        "started": "Start",
        "ended": "Slut",
        "inputs": "Indata",
        "outputs": "Utdata",
        "provenance": "Underlag för ett publicerat värde",
        "provenance_link": "Visa vilka leveranser värdet bygger på",
        "provenance_window": "{source}: perioderna {first} – {last}",
        "built_at": "Publicerade tabeller byggda {at}.",
        "no_build": "Ingen publicerad dbt-körning registrerad; som använda visas leveranser som är publicerade nu.",
        "used": "Använd",
        "yes": "ja",
        "no": "nej",
        "missing_periods": "Perioder utan använd leverans: {periods}",
        "value": "Värde",
        "node": "Steg",
    },
    "en": {
        "title": "Early warning indicators – Borlänge",
        "overview": "Overview",
        "audit": "Audit",
        "dbt_tests": "dbt tests",
        "login": "Log in",
        "logout": "Log out",
        "username": "Username",
        "password": "Password",
        "login_failed": "Wrong username or password.",
        "login_throttled": "Too many failed logins. Wait a while and try again.",
        "login_sso": "Log in with the municipality's account (single sign-on)",
        "login_or": "or with a local account:",
        "sso_no_role": "Your account has no role in EWI. Ask the municipality's IT department for access.",
        "sso_refused": "The single sign-on was not accepted. Try again.",
        "sso_unreachable": "The sign-on service does not answer just now. Try again later.",
        "week": "Week",
        "area": "Area",
        "areas": "Areas",
        "municipality": "Municipality",
        "indicator": "Indicator",
        "show": "Show",
        "rate": "Rate",
        "numerator": "Numerator",
        "denominator": "Denominator",
        "rolling_12": "Rolling 12 weeks",
        "last_year": "Same week last year",
        "alert": "Alert",
        "alerts": "Alerts",
        "no_data": "No published data yet.",
        "freshness": "Data freshness",
        "source": "Source",
        "last_period": "Last published period",
        "published_at": "Published",
        "gate": "Gate",
        "stale": "stale",
        "stale_banner": "Data from {source} is stale: the last published week is {period}.",
        "quarantine_banner": "The latest delivery from {source} was stopped by the gate ({status}); "
                             "figures shown are based on earlier deliveries.",
        "export_csv": "Export CSV",
        "export_png": "Export PNG",
        "latest_week": "Latest complete week",
        "legend_muni": "Colour and sign: compared with the municipality (++ red = at least 50 % higher, "
                       "+ orange = at least 15 % higher, − blue = at least 15 % lower).",
        "time_range": "Time range",
        "range_weeks": "{n} weeks",
        "range_from": "From week",
        "range_to": "to week",
        "range_shown": "Showing {first} – {last}",
        "values_table": "Weekly values as a table",
        "level_high": "at least 50 % higher than the municipality",
        "level_elevated": "at least 15 % higher than the municipality",
        "level_low": "at least 15 % lower than the municipality",
        "alert_cell": "alert",
        "legend_trend": "Arrow: compared with the area's own previous 12 weeks (▲ at least 20 % higher, "
                        "▼ at least 20 % lower).",
        "legend_suppressed": "<5 = fewer than five people; the value is withheld for confidentiality.",
        "grid": "Area map (schematic)",
        "small_multiples": "{indicator} per area over time",
        "weekly_table": "Weekly values",
        "forbidden": "You are not allowed to see this page.",
        "not_found": "No such page.",
        "batches": "Deliveries",
        "chain_holds": "The audit trail's hash chain held",
        "chain_broken": "The audit trail's hash chain was broken",
        "chain_verified_at": "last verified",
        "chain_records": "records checked",
        "chain_never": "The audit trail's hash chain has not been verified yet (ewi audit verify)",
        "file": "File",
        "period": "Period",
        "received": "Received",
        "rows": "Rows",
        "rows_published": "Rows published",
        "status": "Status",
        "reason": "Reason",
        "superseded_by": "Superseded by",
        "checks": "Checks",
        "data_docs": "GX Data Docs",
        "expectation": "Expectation",
        "column": "Column",
        "success": "Passed",
        "observed": "Observed",
        "unexpected": "Unexpected",
        "no_dbt_results": "No dbt test results in the warehouse yet.",
        "role": "Role",
        "language": "Svenska",
        "explanation": "Explanation",
        "method": "Method",
        "observed_value": "Observed",
        "expected": "Expected",
        "threshold": "Threshold",
        "back": "Back",
        "lineage": "Lineage",
        "method_comparison": "Alert methods",
        "method_comparison_legend": "Each alert method's verdict of the week, for the areas and indicators where "
                                    "some method alerts. The overview, the area pages, the exports and the charts "
                                    "show the default method's alerts only ({method}, marked *).",
        "no_alerts": "No method alerts this week.",
        "lineage_graph": "From deliveries through the dbt models to the dashboards",
        "no_manifest": "No dbt manifest.json found in {path}. Generate it after a build with "
                       "`python -c \"from ewi import transform; transform.docs()\"` (or `make demo`).",
        "manifest_generated": "dbt manifest generated {at}",
        "task_runs": "Task runs (OpenLineage)",
        "no_task_runs": "No OpenLineage events in {path} yet (Airflow's OpenLineage provider writes them there).",
        "unreadable_events": "{n} events or files could not be read.",
        "job": "Task",
        "state": "State",
        "started": "Started",
        "ended": "Ended",
        "inputs": "Inputs",
        "outputs": "Outputs",
        "provenance": "What a published value was computed from",
        "provenance_link": "Show the deliveries this value was computed from",
        "provenance_window": "{source}: periods {first} – {last}",
        "built_at": "Published tables built {at}.",
        "no_build": "No published dbt build on record; deliveries published now are shown as used.",
        "used": "Used",
        "yes": "yes",
        "no": "no",
        "missing_periods": "Periods without a used delivery: {periods}",
        "value": "Value",
        "node": "Step",
    },
}

INDICATOR_LABELS = {
    "sv": {
        "chronic_absence": "Hög frånvaro (%)",
        "invalid_absence": "Ogiltig frånvaro (%)",
        "referrals": "Orosanmälningar (per 1 000)",
        "contacts": "Kontakter polis/fält (per 1 000)",
        "multi_signal": "Flera signaler (per 1 000)",
        "area_score": "Områdespoäng (flera indikatorer stiger samtidigt)",
    },
    "en": {
        "chronic_absence": "Chronic absence (%)",
        "invalid_absence": "Invalid absence (%)",
        "referrals": "Referrals (per 1,000)",
        "contacts": "Police/outreach contacts (per 1,000)",
        "multi_signal": "Multiple signals (per 1,000)",
        "area_score": "Area score (several indicators rising together)",
    },
}

SOURCE_LABELS = {
    "sv": {"school_absence": "skolfrånvaro", "referrals": "orosanmälningar", "contacts": "kontakter"},
    "en": {"school_absence": "school absence", "referrals": "referrals", "contacts": "contacts"},
}


def text(lang: str) -> dict[str, str]:
    return TEXT[lang if lang in TEXT else "sv"]


def indicator_label(indicator: str, lang: str) -> str:
    return INDICATOR_LABELS.get(lang, INDICATOR_LABELS["sv"]).get(indicator, indicator)


def source_label(source: str, lang: str) -> str:
    return SOURCE_LABELS.get(lang, SOURCE_LABELS["sv"]).get(source, source)


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_number(value, lang: str, decimals: int = 1, suppressed: bool = False) -> str:
    """A rate or count as shown on screen and in CSV exports: suppressed figures are "<5", never
    0 or blank; Swedish uses a decimal comma."""
    if suppressed and _is_missing(value):
        return SUPPRESSED
    if _is_missing(value):
        return MISSING
    if isinstance(value, int) and not isinstance(value, bool):
        decimals = 0
    elif isinstance(value, Decimal) and value == value.to_integral_value() and decimals == 0:
        value = int(value)
    s = f"{float(value):,.{decimals}f}"
    if lang == "sv":
        s = s.replace(",", "\u00a0").replace(".", ",")
    return s


def fmt_week(week_start: date | None) -> str:
    if week_start is None:
        return MISSING
    y, w, _ = week_start.isocalendar()
    return f"{y}-W{w:02d}"


#: The signals' words (ewi/dashboard/signals.py, its templates); merged into TEXT below.
SIGNAL_TEXT = {
    "sv": {
        "signals_open": "Öppna signaler",
        "signals_open_intro": "Standardmetodens larm, samlade per område och indikator. Bekräfta eller stäng en signal på områdets sida.",
        "signals_none_open": "Inga öppna signaler.",
        "signal_history": "Signaler i området",
        "signal_history_none": "Området har inga signaler.",
        "signal": "Signal",
        "signal_first": "Första larmvecka",
        "signal_latest": "Senaste larmvecka",
        "signal_age": "Ålder",
        "signal_age_weeks": "{n} v",
        "signal_peak": "Högsta poäng",
        "signal_state": "Status",
        "signal_explanation": "Förklaring",
        "signal_state_new": "Ny",
        "signal_state_acknowledged": "Bekräftad",
        "signal_state_closed": "Stängd",
        "signal_acknowledge": "Bekräfta",
        "signal_close": "Stäng",
        "signal_note": "Anteckning",
        "signal_note_hint": "Skriv inga namn eller personnummer.",
        "signal_reason": "Skäl",
        "signal_reason_action_started": "Åtgärd startad",
        "signal_reason_monitored": "Bevakas",
        "signal_reason_data_issue": "Datafel",
        "signal_reason_no_action": "Ingen åtgärd",
        "signal_acknowledged_by": "Bekräftad av {who} {when}",
        "signal_closed_by": "Stängd av {who} {when}",
        "signal_only_coordinators": "Bara samordnare ändrar en signals status.",
        "signal_saved": "Signalens status är sparad.",
        "signal_changed_meanwhile": "Någon annan ändrade signalen under tiden. Sidan visar nu dess status.",
        "signal_not_found": "Signalen finns inte (längre).",
        "signal_coordinators_only": "Bara samordnare ändrar en signals status.",
        "signal_not_a_step": "Det steget går inte: ny → bekräftad → stängd.",
        "signal_reason_needed": "Välj ett skäl för att stänga signalen.",
        "signal_note_too_long": "Anteckningen får vara högst 1000 tecken.",
        "signal_note_identity": "Anteckningen innehåller ett personnummer. Skriv den utan.",
        "access_log": "Åtkomstlogg",
        "access_log_legend": "Vem som har sett vilka områdens siffror (område, indikator, veckor) och vad som har exporterats. Tider i UTC.",
        "access_from": "Från dag",
        "access_to": "Till dag",
        "access_filter": "Visa",
        "access_export": "Exportera loggen (CSV)",
        "access_none": "Ingen åtkomst loggad för urvalet.",
        "access_shown": "{n} poster, de senaste först (högst {limit} här; CSV-exporten har alla).",
        "access_when": "När",
        "access_role": "Roll",
        "access_action": "Åtgärd",
        "access_view": "Vy",
        "access_weeks": "Veckor",
        "access_all": "alla",
        "signal_changes": "Signalernas ändringar",
        "signal_changes_none": "Ingen signal har ändrats ännu.",
        "signal_when": "När",
        "signal_who": "Vem",
        "signal_from_to": "Från → till",
        "signal_view": "Signal",
    },
    "en": {
        "signals_open": "Open signals",
        "signals_open_intro": "The default method's alerts, grouped by area and indicator. Acknowledge or close a signal on its area's page.",
        "signals_none_open": "No open signals.",
        "signal_history": "Signals in this area",
        "signal_history_none": "This area has no signals.",
        "signal": "Signal",
        "signal_first": "First alert week",
        "signal_latest": "Latest alert week",
        "signal_age": "Age",
        "signal_age_weeks": "{n} wk",
        "signal_peak": "Peak score",
        "signal_state": "State",
        "signal_explanation": "Explanation",
        "signal_state_new": "New",
        "signal_state_acknowledged": "Acknowledged",
        "signal_state_closed": "Closed",
        "signal_acknowledge": "Acknowledge",
        "signal_close": "Close",
        "signal_note": "Note",
        "signal_note_hint": "Write no names or identity numbers.",
        "signal_reason": "Reason",
        "signal_reason_action_started": "Action started",
        "signal_reason_monitored": "Monitored",
        "signal_reason_data_issue": "Data issue",
        "signal_reason_no_action": "No action",
        "signal_acknowledged_by": "Acknowledged by {who} {when}",
        "signal_closed_by": "Closed by {who} {when}",
        "signal_only_coordinators": "Only coordinators change a signal's state.",
        "signal_saved": "The signal's state is saved.",
        "signal_changed_meanwhile": "Someone else changed the signal meanwhile. The page now shows its state.",
        "signal_not_found": "The signal does not exist (any more).",
        "signal_coordinators_only": "Only coordinators change a signal's state.",
        "signal_not_a_step": "That step is not possible: new → acknowledged → closed.",
        "signal_reason_needed": "Choose a reason to close the signal.",
        "signal_note_too_long": "The note may be at most 1000 characters.",
        "signal_note_identity": "The note holds a personal identity number. Write it without.",
        "access_log": "Access log",
        "access_log_legend": "Who saw which areas' figures (area, indicator, weeks) and what was exported. Times in UTC.",
        "access_from": "From day",
        "access_to": "To day",
        "access_filter": "Show",
        "access_export": "Export the log (CSV)",
        "access_none": "No access logged for this selection.",
        "access_shown": "{n} entries, newest first (at most {limit} here; the CSV export has all).",
        "access_when": "When",
        "access_role": "Role",
        "access_action": "Action",
        "access_view": "View",
        "access_weeks": "Weeks",
        "access_all": "all",
        "signal_changes": "Signal state changes",
        "signal_changes_none": "No signal has been changed yet.",
        "signal_when": "When",
        "signal_who": "Who",
        "signal_from_to": "From → to",
        "signal_view": "Signal",
    },
}
for _lang, _labels in SIGNAL_TEXT.items():
    TEXT[_lang].update(_labels)

#: The weekly briefing's words (ewi/dashboard/briefing.py); merged into TEXT below.
BRIEFING_TEXT = {
    "sv": {
        "briefing": "Veckobriefing",
        "briefing_title": "Veckobriefing – tidiga signaler, vecka {week}",
        "briefing_made": "Skapad {when} ur publicerade data. Signalernas status som den är nu.",
        "briefing_page": "Sida {page} av {pages}",
        "briefing_open_since": "öppen sedan vecka {week}",
        "briefing_more": "Fler öppna signaler finns på översikten i instrumentpanelen.",
        "briefing_chart_area": "Området",
        "briefing_chart_alert": "Larmvecka (standardmetoden)",
        "briefing_quarantined": "senaste leveransen stoppad i kontrollen",
        "briefing_fresh": "aktuell",
        "briefing_download": "Veckobriefing (PDF)",
        "briefing_gaps": "En lucka i områdets kurva är en vecka med färre än fem personer.",
    },
    "en": {
        "briefing": "Weekly briefing",
        "briefing_title": "Weekly briefing – early signals, week {week}",
        "briefing_made": "Made {when} from published data. The signals' states as they are now.",
        "briefing_page": "Page {page} of {pages}",
        "briefing_open_since": "open since week {week}",
        "briefing_more": "More open signals are on the dashboard's overview.",
        "briefing_chart_area": "The area",
        "briefing_chart_alert": "Alert week (default method)",
        "briefing_quarantined": "last delivery stopped by the gate",
        "briefing_fresh": "up to date",
        "briefing_download": "Weekly briefing (PDF)",
        "briefing_gaps": "A gap in the area's line is a week with fewer than five people.",
    },
}
for _lang, _labels in BRIEFING_TEXT.items():
    TEXT[_lang].update(_labels)
TEXT["sv"]["dbt_docs_site"] = "dbt-dokumentationen (modeller, kolumner, tester)"
TEXT["en"]["dbt_docs_site"] = "The dbt documentation (models, columns, tests)"
