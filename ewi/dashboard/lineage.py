"""The auditors' lineage view: each source's deliveries, through dbt's sources, seeds and models, to
the dashboards that read them (dbt exposures), from the manifest.json that `ewi.transform.docs()`
writes; drawn on the server as SVG (no script). Besides it, the task runs Airflow reported as
OpenLineage events (JSON files under $EWI_HOME/lineage/), with their input and output datasets.

Both files are written by other processes and may be missing, partial or of another version, so
everything here reads them defensively and shows what it could not read instead of failing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path

from ewi import config

#: Left to right: the layers a reader expects, whatever the longest path through the models is.
KINDS = ("delivery", "source", "seed", "staging", "intermediate", "marts", "model", "exposure")
FILL = {"delivery": "#e8e1f5", "source": "#dbe7f3", "seed": "#e4efe0", "staging": "#eef3f8",
        "intermediate": "#fff4d6", "marts": "#d8f0e0", "model": "#f0f0f0",
        "exposure": "#0b3d6b"}
TEXT_FILL = {"exposure": "#ffffff"}

NODE_W, NODE_H, COL_GAP, ROW_GAP, MARGIN = 200, 38, 70, 12, 16
MAX_EVENT_FILES = 2000
MAX_EVENT_BYTES = 20 * 1024 * 1024


def docs_dir() -> Path:
    return config.ewi_home() / "dbt-docs"


def lineage_dir() -> Path:
    return config.ewi_home() / "lineage"


# ---------------------------------------------------------------- dbt's manifest


def load_manifest(directory: Path | None = None) -> tuple[dict | None, Path]:
    path = (directory or docs_dir()) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, path
    return (manifest if isinstance(manifest, dict) else None), path


@dataclass
class Node:
    id: str
    label: str
    kind: str
    title: str = ""
    href: str | None = None
    layer: int = 0
    order: float = 0.0


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def parents(self, node_id: str) -> list[str]:
        return [a for a, b in self.edges if b == node_id]


def _model_kind(node: dict) -> str:
    fqn = node.get("fqn") or []
    group = fqn[1] if len(fqn) > 2 else ""
    return group if group in KINDS else "model"


def build_graph(manifest: dict, deliveries: dict[str, dict] | None = None) -> Graph:
    """Sources, seeds, models and exposures of the manifest and the edges between them; each raw
    source gets a node for its deliveries (`deliveries`: source -> counts from audit.batches)."""
    g = Graph()
    for uid, s in (manifest.get("sources") or {}).items():
        name = f"{s.get('source_name', '')}.{s.get('name', '')}"
        g.nodes[uid] = Node(uid, name, "source", s.get("description") or name)
    for uid, n in (manifest.get("nodes") or {}).items():
        kind = n.get("resource_type")
        if kind not in ("model", "seed"):
            continue
        materialized = (n.get("config") or {}).get("materialized", "")
        title = f"{n.get('schema', '')}.{n.get('name', '')} ({materialized or kind})\n{n.get('description') or ''}"
        g.nodes[uid] = Node(uid, n.get("name", uid), "seed" if kind == "seed" else _model_kind(n), title.strip())
    for uid, e in (manifest.get("exposures") or {}).items():
        url = e.get("url") or ""
        path = "/" + url.split("://", 1)[-1].split("/", 1)[-1] if "://" in url else None
        g.nodes[uid] = Node(uid, e.get("label") or e.get("name", uid), "exposure",
                            e.get("description") or "", href=path)
    for uid, n in [*(manifest.get("nodes") or {}).items(), *(manifest.get("exposures") or {}).items()]:
        if uid not in g.nodes:
            continue
        for parent in ((n.get("depends_on") or {}).get("nodes") or []):
            if parent in g.nodes:
                g.edges.append((parent, uid))
    for uid, s in (manifest.get("sources") or {}).items():
        if s.get("source_name") == "raw":
            name = s.get("name", "")
            counts = (deliveries or {}).get(name, {})
            label = f"{name} deliveries"
            title = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no deliveries recorded"
            g.nodes[f"deliveries.{name}"] = Node(f"deliveries.{name}", label, "delivery", title,
                                                 href="/audit")
            g.edges.append((f"deliveries.{name}", uid))
    _layer(g)
    _order(g)
    return g


def _layer(g: Graph) -> None:
    """Longest path from the deliveries; the other roots (sources without deliveries, seeds) start
    one column in, and the exposures share the last column."""
    parents = defaultdict(list)
    for a, b in g.edges:
        parents[b].append(a)
    done: dict[str, int] = {}

    def depth(uid: str, seen: frozenset = frozenset()) -> int:
        if uid in done:
            return done[uid]
        if uid in seen:  # a cycle would be a broken manifest: cut it rather than recurse forever
            return 0
        node = g.nodes[uid]
        if node.kind == "delivery":
            d = 0
        elif not parents[uid]:
            d = 1
        else:
            d = 1 + max(depth(p, seen | {uid}) for p in parents[uid])
        done[uid] = d
        return d

    for uid in g.nodes:
        g.nodes[uid].layer = depth(uid)
    last = max((n.layer for n in g.nodes.values() if n.kind != "exposure"), default=0) + 1
    for n in g.nodes.values():
        if n.kind == "exposure":
            n.layer = last


def _order(g: Graph, sweeps: int = 4) -> None:
    """Rows within a column: by kind and name, then a few barycentre sweeps against crossings."""
    columns = defaultdict(list)
    for n in g.nodes.values():
        columns[n.layer].append(n)
    for col in columns.values():
        col.sort(key=lambda n: (KINDS.index(n.kind), n.label))
        for i, n in enumerate(col):
            n.order = i
    neighbours_before, neighbours_after = defaultdict(list), defaultdict(list)
    for a, b in g.edges:
        neighbours_before[b].append(a)
        neighbours_after[a].append(b)
    layers = sorted(columns)
    for sweep in range(sweeps):
        forward = sweep % 2 == 0
        neighbours = neighbours_before if forward else neighbours_after
        for layer in layers[1:] if forward else layers[-2::-1]:
            col = columns[layer]
            for n in col:
                linked = [g.nodes[m].order for m in neighbours[n.id]]
                n.order = sum(linked) / len(linked) if linked else n.order
            col.sort(key=lambda n: n.order)
            for i, n in enumerate(col):
                n.order = i


def render_svg(g: Graph) -> str:
    """The graph as an inline SVG element (presentation attributes only: the pages' CSP forbids
    inline styles)."""
    columns = defaultdict(list)
    for n in g.nodes.values():
        columns[n.layer].append(n)
    rows = max((len(c) for c in columns.values()), default=0)
    n_cols = (max(columns) + 1) if columns else 0
    width = 2 * MARGIN + n_cols * NODE_W + max(n_cols - 1, 0) * COL_GAP
    height = 2 * MARGIN + rows * NODE_H + max(rows - 1, 0) * ROW_GAP
    pos = {}
    for layer, col in columns.items():
        # centre each column vertically so short columns sit by their neighbours
        offset = (rows - len(col)) * (NODE_H + ROW_GAP) / 2
        for n in col:
            pos[n.id] = (MARGIN + layer * (NODE_W + COL_GAP), MARGIN + offset + n.order * (NODE_H + ROW_GAP))
    # a group, not an image: an image's children are presentational, and the nodes are links
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" id="lineage-graph" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="group" aria-label="lineage" font-family="sans-serif" '
           f'font-size="12">']
    for a, b in g.edges:
        (xa, ya), (xb, yb) = pos[a], pos[b]
        x1, y1, x2, y2 = xa + NODE_W, ya + NODE_H / 2, xb, yb + NODE_H / 2
        mid = (x1 + x2) / 2
        out.append(f'<path class="edge" data-from="{escape(a)}" data-to="{escape(b)}" '
                   f'd="M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}" '
                   f'fill="none" stroke="#8a9bb0" stroke-width="1.2"/>')
    for n in g.nodes.values():
        x, y = pos[n.id]
        label = n.label if len(n.label) <= 28 else n.label[:27] + "…"
        fill, ink = FILL.get(n.kind, "#f0f0f0"), TEXT_FILL.get(n.kind, "#1d1d1d")
        box = (f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="5" fill="{fill}" '
               f'stroke="#6b7f95"/>'
               f'<text x="{x + 8:.0f}" y="{y + 16:.0f}" fill="{ink}" font-weight="600">{escape(label)}</text>'
               f'<text x="{x + 8:.0f}" y="{y + 30:.0f}" fill="{ink}" font-size="10">{escape(n.kind)}</text>')
        if n.href:
            box = f'<a href="{escape(n.href)}">{box}</a>'
        out.append(f'<g class="node" data-node="{escape(n.id)}" data-kind="{escape(n.kind)}">'
                   f'<title>{escape(n.title or n.label)}</title>{box}</g>')
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------- OpenLineage events


@dataclass
class TaskRun:
    run_id: str
    job: str
    state: str = ""
    started: str | None = None
    ended: str | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    last_event: str = ""


def _events_in(path: Path) -> tuple[list[dict], int]:
    """The events of one file: a JSON object, a JSON array of them, or JSON lines."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        whole = json.loads(text)
    except ValueError:
        events, bad = [], 0
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(event, dict):
                events.append(event)
            else:
                bad += 1
        return events, bad
    items = whole if isinstance(whole, list) else [whole]
    return [e for e in items if isinstance(e, dict)], sum(1 for e in items if not isinstance(e, dict))


def _dataset(d) -> str | None:
    if not isinstance(d, dict) or not d.get("name"):
        return None
    return str(d["name"])


def task_runs(directory: Path | None = None, limit: int = 100) -> dict:
    """OpenLineage run events grouped by run: the job, its latest state, start and end, and the
    datasets it read and wrote; newest first. `unreadable` counts events or files skipped."""
    directory = directory or lineage_dir()
    if not directory.is_dir():
        return {"directory": str(directory), "runs": [], "files": 0, "unreadable": 0, "exists": False}
    files = sorted((p for p in directory.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".ndjson")),
                   key=lambda p: p.stat().st_mtime, reverse=True)[:MAX_EVENT_FILES]
    runs: dict[str, TaskRun] = {}
    unreadable, read_bytes = 0, 0
    for path in files:
        read_bytes += path.stat().st_size
        if read_bytes > MAX_EVENT_BYTES:
            break
        try:
            events, bad = _events_in(path)
        except OSError:
            unreadable += 1
            continue
        unreadable += bad
        for e in events:
            run, job = e.get("run"), e.get("job")
            if not isinstance(run, dict) or not isinstance(job, dict) or not run.get("runId"):
                unreadable += 1
                continue
            r = runs.setdefault(str(run["runId"]), TaskRun(str(run["runId"]), str(job.get("name", ""))))
            when, kind = str(e.get("eventTime") or ""), str(e.get("eventType") or "")
            if kind == "START":
                r.started = min(filter(None, [r.started, when]), default=None)
            elif kind in ("COMPLETE", "FAIL", "ABORT"):
                r.ended = max(filter(None, [r.ended, when]), default=None)
            if when >= r.last_event and kind:
                r.state, r.last_event = kind, when
            for key, target in (("inputs", r.inputs), ("outputs", r.outputs)):
                for d in e.get(key) or []:
                    name = _dataset(d)
                    if name and name not in target:
                        target.append(name)
    ordered = sorted(runs.values(), key=lambda r: r.last_event, reverse=True)[:limit]
    return {"directory": str(directory), "runs": ordered, "files": len(files), "unreadable": unreadable,
            "exists": True}


def short_time(stamp: str | None) -> str:
    if not stamp:
        return ""
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp
