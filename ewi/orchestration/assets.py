"""The assets that chain the DAGs, defined here and nowhere else.

The `landing` asset stands for the landing folder; its AssetWatcher
(ewi.orchestration.triggers.LandingFolderTrigger, run by the triggerer) emits one event per
delivery that is ready, which schedules ewi_ingest. One asset per source stands for its published
raw table (an event means "a batch of this source was published"); one asset stands for the marts
in the `published` schema (an event means "a build passed its tests and was swapped in").

The Asset objects are built on first access (module __getattr__), so that importing this module
needs no Airflow.
"""

from __future__ import annotations

from typing import Any

from ewi import config
from ewi.orchestration import landing
from ewi.settings import get_settings
from ewi.sources import SOURCES

SOURCE_NAMES: tuple[str, ...] = tuple(SOURCES)

#: asset name -> URI. Names are what the Airflow UI shows; URIs are what events are keyed on.
SOURCE_ASSET_URIS: dict[str, str] = {name: f"ewi://warehouse/raw/{name}" for name in SOURCE_NAMES}
PUBLISHED_ASSET_URI = "ewi://warehouse/published"
LANDING_ASSET_URI = "ewi://landing/"
ASSET_GROUP = "ewi"


def _source_assets():
    from airflow.sdk import Asset

    return {
        name: Asset(name=f"raw.{name}", uri=uri, group=ASSET_GROUP)
        for name, uri in SOURCE_ASSET_URIS.items()
    }


def _any_source_published():
    """The condition "a batch of any source was published" (AssetAny of every source asset)."""
    from airflow.sdk.definitions.asset import AssetAny

    return AssetAny(*__getattr__("SOURCE_ASSETS").values())


def _published_asset():
    from airflow.sdk import Asset

    return Asset(name="published", uri=PUBLISHED_ASSET_URI, group=ASSET_GROUP)


def landing_trigger_kwargs() -> dict[str, Any]:
    """The landing watcher's settings, read when the DAG file is parsed (by the DAG processor)."""
    rules = landing.Rules.from_env()
    settings = get_settings()
    return {
        "directory": str(config.landing_dir()),
        "poll_interval": settings.landing_poll_seconds,
        "settle_seconds": rules.settle_seconds,
        "manifest_sources": list(rules.manifest_sources),
        "manifest_wait_seconds": rules.manifest_wait_seconds,
        "retry_after_seconds": settings.landing_retry_after_seconds,
    }


def _landing_asset():
    from airflow.sdk import Asset, AssetWatcher

    from ewi.orchestration.triggers import LandingFolderTrigger

    watcher = AssetWatcher(name="landing_folder", trigger=LandingFolderTrigger(**landing_trigger_kwargs()))
    return Asset(name="landing", uri=LANDING_ASSET_URI, group=ASSET_GROUP, watchers=[watcher])


_LAZY = {
    "LANDING_ASSET": _landing_asset,
    "SOURCE_ASSETS": _source_assets,
    "ANY_SOURCE_PUBLISHED": _any_source_published,
    "PUBLISHED_ASSET": _published_asset,
}


def __getattr__(name: str):
    # LANDING_ASSET, SOURCE_ASSETS (dict source -> Asset), ANY_SOURCE_PUBLISHED, PUBLISHED_ASSET
    if name in _LAZY:
        value = _LAZY[name]()
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
