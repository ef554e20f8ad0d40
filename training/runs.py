"""Reading the tracking store for people: run tables, comparisons, promotions.

Everything returns plain rows or text so the CLI stays a thin printer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from core.config import ProjectConfig
from model.registry import load_version
from training import label_settings
from training.backtest import MODEL
from training.promote import (
    CHAMPION,
    TAG_PREFIX,
    current,
    decide,
    history,
    load_predictions,
    move,
    rollback_target,
)

KEY_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_top_decile")
BASELINES = ("recency", "logreg", "bgnbd")


class RunsError(ValueError):
    """A run or version the user named cannot be found or used."""


def _experiment_id(client: MlflowClient, config: ProjectConfig) -> str:
    found = client.get_experiment_by_name(config.mlflow.experiment)
    if found is None:
        raise RunsError(
            f"no experiment {config.mlflow.experiment!r} in the tracking store: "
            "train first"
        )
    return found.experiment_id


def table(
    client: MlflowClient, config: ProjectConfig, target: str | None, limit: int
) -> list[dict]:
    """Recent model runs (newest first) with key metrics, baselines and aliases."""
    experiment = _experiment_id(client, config)
    where = "tags.kind = 'model'" + (f" and tags.target = '{target}'" if target else "")
    runs = client.search_runs(
        [experiment], where, order_by=["attributes.start_time DESC"], max_results=limit
    )
    champions: dict[str, str | None] = {}
    # every baseline run once, by (training id, target): not a search per row
    siblings: dict[tuple[str, str], list[Run]] = {}
    for s in client.search_runs(
        [experiment], "tags.kind = 'baseline'", max_results=10_000
    ):
        key = (s.data.tags.get("training_id", ""), s.data.tags.get("target", ""))
        siblings.setdefault(key, []).append(s)
    rows = []
    for r in runs:
        tags, m = r.data.tags, r.data.metrics
        name = tags.get("registered_model", "")
        if name not in champions:
            champions[name] = current(client, name) if name else None
        version = tags.get("registered_version", "")
        row = {
            "target": tags["target"],
            "run_id": r.info.run_id,
            "training_id": tags["training_id"],
            "version": version,
            "champion": bool(version) and champions[name] == version,
            "calibration": r.data.params.get("calibration", ""),
        }
        for key in KEY_METRICS:
            row[key] = m.get(f"backtest_{key}_mean")
        row["calibrated_ece"] = m.get("calibrated_ece_mean")
        # what the backtest chose to serve, and its AUC margin over the best
        # baseline with the paired bootstrap interval (training.backtest.margin)
        row["served"] = r.data.params.get("selection.chosen", "")
        row["margin_baseline"] = r.data.params.get("margin_baseline", "")
        for key in (
            "margin_roc_auc",
            "margin_roc_auc_ci_low",
            "margin_roc_auc_ci_high",
        ):
            row[key] = m.get(key)
        # the mean hides a bad origin: each origin's AUC, oldest first
        history = client.get_metric_history(r.info.run_id, "backtest_roc_auc")
        row["roc_auc_by_origin"] = [h.value for h in sorted(history, key=_step)]
        for s in siblings.get((tags["training_id"], tags["target"]), []):
            base = s.data.tags["model"]
            row[f"{base}_roc_auc"] = s.data.metrics.get("backtest_roc_auc_mean")
            row[f"{base}_log_loss"] = s.data.metrics.get("backtest_log_loss_mean")
        rows.append(row)
    return rows


def _step(metric) -> int:  # noqa: ANN001
    return metric.step


def format_table(rows: list[dict]) -> str:
    def f(v: float | None, w: int = 7) -> str:
        return f"{v:{w}.4f}" if isinstance(v, float) else " " * (w - 3) + "n/a"

    head = (
        f"{'target':16} {'run':8} {'trained':17} {'ver':>4} {'':1} {'AUC':>7} "
        f"{'logloss':>7} {'ECE cal':>7} {'recency':>7} {'logreg':>7} {'bgnbd':>7}"
        f"  {'served':17} {'AUC margin [95% paired bootstrap]':34}"
        "  (AUC; backtest means)  AUC per origin"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['target']:16} {r['run_id'][:8]:8} {r['training_id']:17} "
            f"{r['version']:>4} {'*' if r['champion'] else ' '} {f(r['roc_auc'])} "
            f"{f(r['log_loss'])} {f(r['calibrated_ece'])} "
            + " ".join(f(r.get(f"{b}_roc_auc")) for b in BASELINES)
            + f"  {r.get('served') or 'n/a':17} {_margin(r):34}"
            + "  "
            + " ".join(f"{v:.4f}" for v in r.get("roc_auc_by_origin", []))
        )
    lines.append("* = champion")
    return "\n".join(lines)


def _margin(row: dict) -> str:
    """`+0.0123 [+0.0041, +0.0201] vs logreg`, or n/a for older runs."""
    point = row.get("margin_roc_auc")
    if not isinstance(point, float):
        return "n/a"
    low, high = row.get("margin_roc_auc_ci_low"), row.get("margin_roc_auc_ci_high")
    return f"{point:+.4f} [{low:+.4f}, {high:+.4f}] vs {row.get('margin_baseline')}"


def resolve_run(client: MlflowClient, ref: str) -> Run:
    """A run from a run id, `NAME/VERSION` or `models:/NAME/VERSION`."""
    text = ref.removeprefix("models:/")
    if "/" in text:
        name, version = text.rsplit("/", 1)
        try:
            mv = client.get_model_version(name, version)
        except Exception as exc:  # noqa: BLE001 - the store decides the type
            raise RunsError(f"{ref}: no such model version") from exc
        return client.get_run(mv.run_id)
    try:
        return client.get_run(text)
    except Exception as exc:  # noqa: BLE001
        raise RunsError(
            f"{ref}: no such run (give a run id, NAME/VERSION or models:/NAME/VERSION)"
        ) from exc


def _backtest(client: MlflowClient, run: Run) -> dict[str, dict]:
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id,
        artifact_path="backtest.json",
        tracking_uri=client.tracking_uri,
    )
    rows = json.loads(Path(local).read_text())["origins"]
    return {r["origin"]: r for r in rows if r["model"] == MODEL}


@dataclass
class Comparison:
    a: Run
    b: Run
    origins: list[dict]
    params: list[tuple[str, str | None, str | None]]
    # every label setting of either run, side by side
    labels: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    # each run's promotion record (the gate's decision at training), as text
    promotions: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [
            f"A = {self.a.info.run_name} ({self.a.info.run_id})",
            f"B = {self.b.info.run_name} ({self.b.info.run_id})",
            "",
            "per origin (B - A; log loss, Brier and ECE: lower is better)",
            f"{'origin':10} {'metric':18} {'A':>9} {'B':>9} {'B - A':>9}",
        ]
        for o in self.origins:
            for key in KEY_METRICS:
                a, b = o["a"].get(key), o["b"].get(key)
                if a is None or b is None:
                    cells = f"{_cell(a):>9} {_cell(b):>9} {'':>9}"
                else:
                    cells = f"{a:9.4f} {b:9.4f} {b - a:+9.4f}"
                lines.append(f"{o['origin']:10} {key:18} {cells}")
        lines += ["", f"label settings {'':13} {'A':>20} {'B':>20}"]
        for key, a, b in self.labels:
            mark = "" if a == b else "  <- differ"
            lines.append(f"  {key:26} {_short(a, 20):>20} {_short(b, 20):>20}{mark}")
        lines += ["", "promotion records (the gate at training)"]
        lines += [f"  {p}" for p in self.promotions] or ["  (none)"]
        lines += ["", "parameters that differ"]
        if not self.params:
            lines.append("  (none)")
        for key, a, b in self.params:
            lines.append(f"  {key}: A={_short(a)}  B={_short(b)}")
        return "\n".join(lines)


def _cell(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _short(v: str | None, width: int = 70) -> str:
    if v is None:
        return "(unset)"
    return v if len(v) <= width else v[: width - 3] + "..."


def compare(client: MlflowClient, ref_a: str, ref_b: str) -> Comparison:
    a, b = resolve_run(client, ref_a), resolve_run(client, ref_b)
    bt_a, bt_b = _backtest(client, a), _backtest(client, b)
    origins = [
        {"origin": o, "a": bt_a.get(o, {}), "b": bt_b.get(o, {})}
        for o in sorted(set(bt_a) | set(bt_b))
    ]
    keys = sorted(set(a.data.params) | set(b.data.params))
    params = [
        (k, a.data.params.get(k), b.data.params.get(k))
        for k in keys
        if a.data.params.get(k) != b.data.params.get(k)
    ]
    return Comparison(
        a,
        b,
        origins,
        params,
        _labels(a, b),
        [p for p in (_promotion(client, "A", a), _promotion(client, "B", b)) if p],
    )


def _labels(a: Run, b: Run) -> list[tuple[str, str | None, str | None]]:
    """Both runs' label settings; a run trained before they were logged shows its
    horizon_days and `(not logged)` for the others."""

    def missing(run: Run) -> str | None:
        logged = label_settings.of_run(run.data.params) is not None
        return None if logged else "(not logged)"

    mine = label_settings.compared(a.data.params)
    theirs = label_settings.compared(b.data.params)
    return [
        (k, mine.get(k, missing(a)), theirs.get(k, missing(b)))
        for k in sorted(set(mine) | set(theirs))
    ]


def _promotion(client: MlflowClient, label: str, run: Run) -> str | None:
    """The gate's decision recorded on the run's model version, with its bootstrap
    interval (None for a run without a registered version or record)."""
    name = run.data.tags.get("registered_model")
    version = run.data.tags.get("registered_version")
    if not name or not version:
        return None
    try:
        tags = client.get_model_version(name, version).tags
    except Exception:  # noqa: BLE001 - the store decides the type
        return None
    t = {k[len(TAG_PREFIX) :]: v for k, v in tags.items() if k.startswith(TAG_PREFIX)}
    if "decision" not in t:
        return None
    against = t.get("previous_champion_version") or "-"
    head = f"{label} = {name} v{version} vs champion v{against}: {t['decision']}"
    if "log_loss_gain_low" not in t:
        method = "no champion" if against == "-" else "means compared, no interval"
        return f"{head} ({method})"
    pct = f"{float(t['bootstrap_confidence']):.0%}"
    return (
        f"{head}; log-loss gain {float(t['log_loss_gain']):+.6f} {pct} interval "
        f"[{float(t['log_loss_gain_low']):+.6f}, {float(t['log_loss_gain_high']):+.6f}]"
        f", AUC loss {float(t['auc_loss']):+.4f} [{float(t['auc_loss_low']):+.4f}, "
        f"{float(t['auc_loss_high']):+.4f}] (paired bootstrap, "
        f"{int(float(t['bootstrap_samples']))} resamples of "
        f"{int(float(t['bootstrap_customers']))} customers, seed "
        f"{int(float(t['bootstrap_seed']))})"
    )


def promote(
    client: MlflowClient,
    config: ProjectConfig,
    target: str,
    version: str,
    force: bool,
    reason: str | None,
) -> tuple[bool, str]:
    """Move `champion` to `version` through the gate, or past it with --force."""
    name = config.model_name(target)
    uri = client.tracking_uri
    holder = current(client, name)
    if holder == version:
        return False, f"{name} v{version} is already {CHAMPION}"
    challenger = load_version(uri, name, version)
    if force:
        if not reason:
            raise RunsError("--force needs --reason: say why the gate is overridden")
        entry = move(
            client,
            config.mlflow.experiment,
            name,
            version,
            kind="force",
            reason=f"forced: {reason}",
        )
        return True, (
            f"{name}: {CHAMPION} v{entry['from_version'] or '-'} -> v{version} "
            f"(forced by {entry['actor']}: {reason})"
        )
    champion = load_version(uri, name, holder) if holder else None
    mine = client.get_model_version(name, version).run_id
    decision = decide(
        client,
        config.training.promotion,
        target,
        (
            challenger.evidence,
            label_settings.compared(client.get_run(mine).data.params),
            load_predictions(client, mine),
        ),
        (
            (champion.evidence, holder, client.get_model_version(name, holder).run_id)
            if champion is not None and holder is not None
            else None
        ),
    )
    if not decision.promote:
        return False, f"{name} v{version} not promoted: {decision.reason}"
    text = decision.reason if not reason else f"{decision.reason}; {reason}"
    move(
        client,
        config.mlflow.experiment,
        name,
        version,
        kind="manual",
        reason=text,
        figures=decision.figures(),
    )
    return True, f"{name}: {CHAMPION} v{holder or '-'} -> v{version}: {decision.reason}"


def rollback(
    client: MlflowClient, config: ProjectConfig, target: str, reason: str | None
) -> str:
    name = config.model_name(target)
    moves = history(client, config.mlflow.experiment, name)
    holder = current(client, name)
    back = rollback_target(moves, holder)
    if back is None:
        raise RunsError(
            f"{name}: no earlier champion to roll back to from v{holder or '-'} "
            "(the promotions log has none)"
        )
    entry = move(
        client,
        config.mlflow.experiment,
        name,
        back,
        kind="rollback",
        reason=f"rollback from v{holder}" + (f": {reason}" if reason else ""),
    )
    return f"{name}: {CHAMPION} v{holder} -> v{back} (rollback by {entry['actor']})"


def format_history(moves: list[dict]) -> str:
    lines = [f"{'moved at (UTC)':32} {'from':>5} {'to':>4} {'kind':9} {'by':12} reason"]
    for m in moves:
        lines.append(
            f"{m['moved_at']:32} {m['from_version'] or '-':>5} {m['to_version']:>4} "
            f"{m['kind']:9} {m['actor']:12} {m['reason']}"
        )
    return "\n".join(lines)
