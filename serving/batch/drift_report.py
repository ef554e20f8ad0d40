"""The drift report as files: `drift.json` (serving.batch.drift's dict) and
`drift.html` (the same figures as tables, with plots embedded as PNG): the PSI of
the most drifted features against the thresholds, and per score and per drifted
feature the reference's bin shares beside tonight's."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

JSON_FILE, HTML_FILE = "drift.json", "drift.html"
TOP_FEATURES = 25


def write(report: dict, folder: Path) -> list[Path]:
    """Write drift.json and drift.html into `folder`; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / JSON_FILE, folder / HTML_FILE]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(render(report))
    return paths


def render(report: dict) -> str:
    t = report["thresholds"]
    title = f"Drift report, as of {report.get('as_of', '?')}: {report['level']}"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>PSI thresholds: warn {t['warn']}, alert {t['alert']}. "
        f"Alerts: {html.escape(', '.join(report['alerts']) or 'none')}. "
        f"Warnings: {html.escape(', '.join(report['warnings']) or 'none')}.</p>",
    ]
    if report["without_reference"]:
        body.append(
            "<p>No training reference (drift not measured) for: "
            f"{html.escape(', '.join(report['without_reference']))}</p>"
        )
    body.append("<h2>Scores</h2>")
    body.append(_table(report["scores"], "target"))
    body.append(_img(_psi_plot(report)))
    for item in report["scores"]:
        body.append(_img(_bins_plot(f"score: {item['target']}", item)))
    body.append("<h2>Features (largest PSI first)</h2>")
    body.append(_table(report["features"], "feature"))
    for item in report["features"]:
        if item["level"] != "ok":
            body.append(_img(_bins_plot(item["feature"], item)))
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        ".alert{background:#f8d0d0}.warn{background:#fbeec2}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>"
        f"{html.escape(title)}</title><style>{style}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


COLUMNS = (
    ("psi", "PSI", "{:.4f}"),
    ("level", "level", "{}"),
    ("rows", "rows", "{:,}"),
    ("missing_share", "missing", "{:.2%}"),
    ("missing_share_training", "missing (training)", "{:.2%}"),
    ("below_training_min", "below training min", "{:,}"),
    ("above_training_max", "above training max", "{:,}"),
    ("training_min", "training min", "{}"),
    ("training_max", "training max", "{}"),
)


def _table(items: list[dict], key: str) -> str:
    head = "".join(f"<th>{h}</th>" for _, h, _ in COLUMNS)
    rows = []
    for item in items:
        cells = "".join(
            f"<td>{html.escape(fmt.format(item[k]) if item[k] is not None else '')}"
            "</td>"
            for k, _, fmt in COLUMNS
        )
        rows.append(
            f"<tr class='{item['level']}'><th>{html.escape(str(item[key]))}</th>"
            f"{cells}</tr>"
        )
    return f"<table><tr><th>{key}</th>{head}</tr>{''.join(rows)}</table>"


def _psi_plot(report: dict) -> Figure:
    items = [(f"score:{s['target']}", s["psi"]) for s in report["scores"]]
    items += [(f["feature"], f["psi"]) for f in report["features"][:TOP_FEATURES]]
    fig, ax = _figure(8, 0.25 * len(items) + 1.2)
    names = [n for n, _ in items][::-1]
    ax.barh(names, [v for _, v in items][::-1], color="#4477aa")
    t = report["thresholds"]
    ax.axvline(t["warn"], color="#ccaa33", linestyle="--", label="warn")
    ax.axvline(t["alert"], color="#cc3333", linestyle="--", label="alert")
    ax.set_xlabel("PSI")
    ax.set_title(f"PSI, scores and the {TOP_FEATURES} most drifted features")
    ax.legend(loc="lower right")
    ax.tick_params(axis="y", labelsize=7)
    return fig


def _bins_plot(title: str, item: dict) -> Figure:
    bins = item["bins"]
    edges = bins["edges"]
    labels = ([f"<={edges[0]:.3g}"] if edges else ["all"]) + [
        f">{e:.3g}" for e in edges
    ]
    labels = [*labels, "missing"]
    x = range(len(labels))
    fig, ax = _figure(8, 2.6)
    width = 0.4
    ax.bar([i - width / 2 for i in x], bins["expected"], width, label="training")
    ax.bar([i + width / 2 for i in x], bins["actual"], width, label="tonight")
    ax.set_xticks(list(x), labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of rows")
    ax.set_title(f"{title}: PSI {item['psi']:.3f} ({item['level']})")
    ax.legend()
    return fig


def _figure(width: float, height: float):
    """A Figure on its own Agg canvas (no pyplot state), and its one Axes."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _img(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode()
    return f"<p><img src='data:image/png;base64,{data}'></p>"
