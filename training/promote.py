"""The promotion gate, alias moves, and their audit trail.

A new version always gets the `challenger` alias. It takes `champion` when there is
none, or when it passes the gate against the champion:

1. Labels alike: the two model runs' label settings (`label.*` params, see
   training.label_settings) must be equal; otherwise the figures measure different
   things and the challenger is not promoted (the reason names the settings that
   differ). A champion trained before the settings were logged is compared on
   `horizon_days` only, and the reason says so.
2. Same rows: only the backtest origins both were evaluated on count (same origin
   date, same number of rows and positives, so the same out-of-time rows).
3. Beyond noise: each model run logs its out-of-time predictions (the raw model's,
   the ones the per-origin log loss and AUC are computed from) as
   `backtest_predictions.parquet`. The gate joins the two on (customer, origin)
   and runs a paired bootstrap over customers (training.bootstrap): the
   `confidence` central interval of the log-loss gain and of the AUC loss
   (champion minus challenger, means over the common origins). The challenger is
   promoted when the gain's lower end exceeds `min_log_loss_gain` and the AUC
   loss's lower end does not exceed `max_auc_loss` (it is refused on AUC only when
   it loses more than allowed beyond noise). When either run has no predictions
   (trained before they were logged) the gate falls back to the means: gain >
   `min_log_loss_gain`, AUC loss <= `max_auc_loss`, and the reason says so.

Every move of `champion` (by the gate, `propensity promote --force` or
`propensity rollback`) is recorded twice:
- as tags on the model versions (`champion.*` on the version that gains and the
  one that loses the alias);
- as a run in the `<experiment>.promotions` experiment of the tracking store:
  model, from- and to-version, reason, actor, kind and figures (with the
  bootstrap interval), at its time.
The log answers "which version was champion on date D" (`champion_at`).
"""

from __future__ import annotations

import getpass
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from core.config import PromotionConfig
from model.registry import (
    CHALLENGER,
    CHAMPION,
    PROMOTIONS_SUFFIX,
    ensure_experiment,
    promotions_experiment,
)
from model.registry import promotion_history as history  # noqa: F401 - for the CLI
from training import bootstrap, label_settings
from training.bootstrap import CUSTOMER, LABEL, ORIGIN, P, Paired

TAG_PREFIX = "promotion."
MOVE_PREFIX = "champion."
# each model run's out-of-time predictions: customer_id, origin, label, p (raw)
PREDICTIONS = "backtest_predictions.parquet"
METHOD_BOOTSTRAP, METHOD_MEANS = "paired_bootstrap", "means"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    challenger_log_loss: float
    champion_log_loss: float | None = None
    champion_version: str | None = None
    challenger_auc: float | None = None
    champion_auc: float | None = None
    origins: list[str] = field(default_factory=list)
    # the paired bootstrap's intervals, when both runs logged their predictions
    interval: Paired | None = None

    @property
    def method(self) -> str:
        return METHOD_BOOTSTRAP if self.interval is not None else METHOD_MEANS

    def figures(self) -> dict[str, float]:
        values = {
            "challenger_log_loss": self.challenger_log_loss,
            "champion_log_loss": self.champion_log_loss,
            "challenger_roc_auc": self.challenger_auc,
            "champion_roc_auc": self.champion_auc,
            **self.interval_figures(),
        }
        return {k: float(v) for k, v in values.items() if v is not None}

    def interval_figures(self) -> dict[str, float]:
        """The bootstrap's figures (empty without one), for the record."""
        b = self.interval
        if b is None:
            return {}
        return {
            "log_loss_gain": b.log_loss_gain.point,
            "log_loss_gain_low": b.log_loss_gain.low,
            "log_loss_gain_high": b.log_loss_gain.high,
            "auc_loss": b.auc_loss.point,
            "auc_loss_low": b.auc_loss.low,
            "auc_loss_high": b.auc_loss.high,
            "bootstrap_confidence": b.confidence,
            "bootstrap_samples": b.samples,
            "bootstrap_seed": b.seed,
            "bootstrap_customers": b.customers,
            "bootstrap_rows": b.rows,
        }


def _mean(evidence: list[dict], key: str) -> float:
    return float(np.mean([e[key] for e in evidence]))


def common_origins(
    challenger: list[dict], champion: list[dict]
) -> tuple[list[dict], list[dict]]:
    """The origins both were scored on, with the same rows (count and positives)."""
    theirs = {e["origin"]: e for e in champion}
    mine, other = [], []
    for e in challenger:
        c = theirs.get(e["origin"])
        if c is not None and (c["n"], c["positives"]) == (e["n"], e["positives"]):
            mine.append(e)
            other.append(c)
    return mine, other


NOT_PROMOTED = (
    "challenger not promoted (`propensity promote --force` overrides, with a reason)"
)


def gate(
    challenger: list[dict],
    champion: list[dict] | None,
    champion_version: str | None,
    policy: PromotionConfig,
    *,
    labels: tuple[list[str], str | None] | None = None,
    predictions: tuple[pd.DataFrame | None, pd.DataFrame | None] | None = None,
) -> Decision:
    """Decide on the per-origin evidence of both versions (see module docstring).

    `labels`: the label settings that differ and a note, as from
    `label_settings.differences` (None: not checked). `predictions`: the
    challenger's and the champion's out-of-time predictions (PREDICTIONS frames;
    None for a run that has none)."""
    ll = _mean(challenger, "log_loss") if challenger else float("nan")
    if champion_version is None:
        return Decision(True, "no champion yet", ll)
    differ, note = labels if labels is not None else ([], None)
    if differ:
        return Decision(
            False,
            f"label settings differ from champion v{champion_version}: "
            f"{'; '.join(differ)}; the runs predict different labels and are not "
            f"compared; {NOT_PROMOTED}",
            ll,
            None,
            champion_version,
        )
    mine, other = common_origins(challenger, champion or [])
    if not mine:
        return Decision(
            False,
            f"champion v{champion_version} was not evaluated on any of this run's "
            "origins with the same rows, so the two cannot be compared; "
            + NOT_PROMOTED,
            ll,
            None,
            champion_version,
        )
    ll, champ_ll = _mean(mine, "log_loss"), _mean(other, "log_loss")
    auc, champ_auc = _mean(mine, "roc_auc"), _mean(other, "roc_auc")
    origins = [e["origin"] for e in mine]
    interval, why_not = _bootstrap(predictions, origins, policy)
    notes = [n for n in (note, why_not) if n]
    if interval is None:
        fails, text = _by_means(ll, champ_ll, auc, champ_auc, policy)
    else:
        fails, text = _by_interval(ll, champ_ll, auc, champ_auc, interval, policy)
    verdict = {
        "gain": "does not beat",
        "auc": "beats on log loss but loses too much AUC to",
        "": "beats",
    }[fails]
    reason = (
        f"challenger {verdict} champion v{champion_version}: {text} on "
        f"{len(origins)} common origin(s) {origins[0]}..{origins[-1]}"
    )
    if interval is not None:
        reason += (
            f"; paired bootstrap over {interval.customers} customers "
            f"({interval.rows} rows), {interval.samples} resamples, seed "
            f"{interval.seed}"
        )
    return Decision(
        fails == "",
        "; ".join([reason, *notes]),
        ll,
        champ_ll,
        champion_version,
        auc,
        champ_auc,
        origins,
        interval,
    )


def _by_means(
    ll: float, champ_ll: float, auc: float, champ_auc: float, policy: PromotionConfig
) -> tuple[str, str]:
    """Today's rule on the means: what fails ("gain", "auc" or "") and the figures."""
    gain, auc_loss = champ_ll - ll, champ_auc - auc
    text = (
        f"mean log loss {ll:.6f} vs {champ_ll:.6f} (gain {gain:+.6f}, needs > "
        f"{policy.min_log_loss_gain:g}), mean ROC AUC {auc:.4f} vs {champ_auc:.4f} "
        f"(loss {auc_loss:+.4f}, allowed <= {policy.max_auc_loss:g})"
    )
    if gain <= policy.min_log_loss_gain:
        return "gain", text
    if auc_loss > policy.max_auc_loss:
        return "auc", text
    return "", text


def _by_interval(
    ll: float,
    champ_ll: float,
    auc: float,
    champ_auc: float,
    b: Paired,
    policy: PromotionConfig,
) -> tuple[str, str]:
    """The rule beyond noise: the gain's interval above min_log_loss_gain, the AUC
    loss's interval not above max_auc_loss."""
    pct = f"{b.confidence:.0%}"
    g, a = b.log_loss_gain, b.auc_loss
    text = (
        f"mean log loss {ll:.6f} vs {champ_ll:.6f} (gain {g.point:+.6f}, {pct} "
        f"interval [{g.low:+.6f}, {g.high:+.6f}], needs lower end > "
        f"{policy.min_log_loss_gain:g}), mean ROC AUC {auc:.4f} vs {champ_auc:.4f} "
        f"(loss {a.point:+.4f}, {pct} interval [{a.low:+.4f}, {a.high:+.4f}], "
        f"refused when lower end > {policy.max_auc_loss:g})"
    )
    if g.low <= policy.min_log_loss_gain:
        return "gain", text
    if a.low > policy.max_auc_loss:
        return "auc", text
    return "", text


def _bootstrap(
    predictions: tuple[pd.DataFrame | None, pd.DataFrame | None] | None,
    origins: list[str],
    policy: PromotionConfig,
) -> tuple[Paired | None, str | None]:
    """The paired bootstrap on the common origins, or None and why not."""
    mine, theirs = predictions if predictions is not None else (None, None)
    if theirs is None:
        return None, (
            "the champion's run has no out-of-time predictions (trained before they "
            "were logged): means compared, no bootstrap interval"
        )
    if mine is None:
        return None, (
            "the challenger's run has no out-of-time predictions: means compared, "
            "no bootstrap interval"
        )
    joined = join_predictions(mine, theirs, origins)
    if joined is None:
        return None, (
            "the two runs' out-of-time predictions do not cover the same customers "
            "and labels on the common origins: means compared, no bootstrap interval"
        )
    return (
        bootstrap.paired(
            joined,
            "champion",
            "challenger",
            samples=policy.bootstrap_samples,
            confidence=policy.confidence,
        ),
        None,
    )


def join_predictions(
    challenger: pd.DataFrame, champion: pd.DataFrame, origins: list[str]
) -> pd.DataFrame | None:
    """One row per (customer, origin) of the common origins with `label` and both
    models' `p` as `challenger` and `champion`; None unless both scored exactly the
    same rows with the same labels."""
    keep = [CUSTOMER, ORIGIN, LABEL, P]
    a = challenger[keep][challenger[ORIGIN].astype(str).isin(origins)]
    b = champion[keep][champion[ORIGIN].astype(str).isin(origins)]
    a = a.assign(**{ORIGIN: a[ORIGIN].astype(str), CUSTOMER: a[CUSTOMER].astype(str)})
    b = b.assign(**{ORIGIN: b[ORIGIN].astype(str), CUSTOMER: b[CUSTOMER].astype(str)})
    try:
        joined = a.merge(
            b, on=[CUSTOMER, ORIGIN], suffixes=("", "_champion"), validate="one_to_one"
        )
    except pd.errors.MergeError:  # a customer twice at one origin: not comparable
        return None
    if len(joined) != len(a) or len(joined) != len(b) or joined.empty:
        return None
    if not (joined[LABEL] == joined[LABEL + "_champion"]).all():
        return None
    return joined.rename(columns={P: "challenger", P + "_champion": "champion"})[
        [CUSTOMER, ORIGIN, LABEL, "challenger", "champion"]
    ]


def predictions_frame(
    origins: list[str],
    customers: list[np.ndarray],
    labels: list[np.ndarray],
    p: list[np.ndarray],
) -> pd.DataFrame:
    """The PREDICTIONS frame from per-origin arrays."""
    return pd.DataFrame(
        {
            CUSTOMER: np.concatenate(customers).astype(str),
            ORIGIN: np.repeat(origins, [len(c) for c in customers]),
            LABEL: np.concatenate(labels).astype(np.int8),
            P: np.concatenate(p).astype(np.float64),
        }
    )


def log_predictions(frame: pd.DataFrame) -> None:
    """Log the PREDICTIONS artifact into the active run."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / PREDICTIONS
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path))


def load_predictions(client: MlflowClient, run_id: str | None) -> pd.DataFrame | None:
    """A run's PREDICTIONS artifact, or None when it has none (older runs)."""
    if not run_id:
        return None
    if PREDICTIONS not in {a.path for a in client.list_artifacts(run_id)}:
        return None
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=PREDICTIONS,
            dst_path=folder,
            tracking_uri=client.tracking_uri,
        )
        return pd.read_parquet(local)


def decide(
    client: MlflowClient,
    policy: PromotionConfig,
    target: str,
    challenger: tuple[list[dict], dict[str, str], pd.DataFrame | None],
    champion: tuple[list[dict], str, str | None] | None,
) -> Decision:
    """The gate with what the tracking store holds about the champion:
    `challenger` = (evidence, label params, predictions), `champion` = (evidence,
    version, run id) or None."""
    evidence, labels, predictions = challenger
    if champion is None:
        return gate(evidence, None, None, policy)
    champion_evidence, version, run_id = champion
    params = client.get_run(run_id).data.params if run_id else {}
    return gate(
        evidence,
        champion_evidence,
        version,
        policy,
        labels=label_settings.differences(target, labels, params),
        predictions=(predictions, load_predictions(client, run_id)),
    )


def actor() -> str:
    """Who moves an alias: $PROPENSITY_USER, else the login name."""
    return os.environ.get("PROPENSITY_USER") or getpass.getuser()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def log_experiment(experiment: str) -> str:
    return promotions_experiment(experiment)


def record(
    client: MlflowClient,
    experiment: str,
    name: str,
    version: str,
    decision: Decision,
) -> None:
    """Training's decision: figures as version tags, `challenger` on the new version,
    and `champion` moved (and logged) when the gate passed."""
    tags = {
        "decision": "promoted" if decision.promote else "kept_as_challenger",
        "reason": decision.reason,
        "challenger_log_loss": f"{decision.challenger_log_loss:.10f}",
        "champion_log_loss": (
            ""
            if decision.champion_log_loss is None
            else f"{decision.champion_log_loss:.10f}"
        ),
        "previous_champion_version": decision.champion_version or "",
        "origins": ",".join(decision.origins),
        "method": decision.method,
        **{k: f"{v:.10g}" for k, v in decision.interval_figures().items()},
        "decided_at": _now(),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, TAG_PREFIX + key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    if decision.promote:
        move(
            client,
            experiment,
            name,
            version,
            kind="gate",
            reason=decision.reason,
            figures=decision.figures(),
        )


def current(client: MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except Exception:  # noqa: BLE001 - MLflow raises its own types per store
        return None


def move(
    client: MlflowClient,
    experiment: str,
    name: str,
    version: str,
    *,
    kind: str,
    reason: str,
    figures: dict[str, float] | None = None,
    who: str | None = None,
) -> dict:
    """Point `champion` of `name` at `version` and record the move."""
    previous = current(client, name)
    who = who or actor()
    when = _now()
    client.set_registered_model_alias(name, CHAMPION, version)
    for key, value in {
        "since": when,
        "previous": previous or "",
        "reason": reason,
        "kind": kind,
        "by": who,
    }.items():
        client.set_model_version_tag(name, version, MOVE_PREFIX + key, value)
    if previous is not None and previous != version:
        client.set_model_version_tag(name, previous, MOVE_PREFIX + "until", when)
        client.set_model_version_tag(
            name, previous, MOVE_PREFIX + "replaced_by", version
        )
    entry = {
        "model": name,
        "from_version": previous or "",
        "to_version": version,
        "kind": kind,
        "reason": reason,
        "actor": who,
        "moved_at": when,
    }
    _log_move(client, experiment, entry, figures or {})
    return entry


def _log_move(
    client: MlflowClient, experiment: str, entry: dict, figures: dict[str, float]
) -> None:
    # beside the project's artifacts when they are local files; a tracking
    # server chooses its own (the log holds no artifacts either way)
    main = client.get_experiment_by_name(experiment)
    base = main.artifact_location if main is not None else ""
    location = (
        base.rstrip("/") + PROMOTIONS_SUFFIX if base.startswith("file:") else None
    )
    experiment_id = ensure_experiment(client, log_experiment(experiment), location)
    run = client.create_run(
        experiment_id,
        run_name=f"{entry['model']}: v{entry['from_version'] or '-'} -> "
        f"v{entry['to_version']}",
        tags={f"move.{k}": str(v) for k, v in entry.items()},
    )
    for key, value in figures.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)


def champion_at(moves: list[dict], when: datetime) -> str | None:
    """The version that was champion at `when` (UTC), from the move log."""
    stamp = when.replace(tzinfo=UTC) if when.tzinfo is None else when
    holder = None
    for m in moves:
        if datetime.fromisoformat(m["moved_at"]) <= stamp:
            holder = m["to_version"]
    return holder


def rollback_target(moves: list[dict], current_version: str | None) -> str | None:
    """The champion before the current one was promoted: the from-version of the
    latest promotion (not a rollback) to the current version."""
    for m in reversed(moves):
        if m["to_version"] == current_version and m["kind"] != "rollback":
            return m["from_version"] or None
    return None
