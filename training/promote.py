"""The promotion gate, alias moves, and their audit trail.

A new version always gets the `challenger` alias. It takes `champion` when there is
none, or when it passes the gate against the champion on the backtest origins both
were evaluated on (same origin date, same number of rows and positives, so the
same out-of-time rows): its mean log loss must be lower by more than
`min_log_loss_gain` and its mean ROC AUC at most `max_auc_loss` lower.

Every move of `champion` (by the gate, `propensity promote --force` or
`propensity rollback`) is recorded twice:
- as tags on the model versions (`champion.*` on the version that gains and the
  one that loses the alias);
- as a run in the `<experiment>.promotions` experiment of the tracking store:
  model, from- and to-version, reason, actor, kind and figures, at its time.
The log answers "which version was champion on date D" (`champion_at`).
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from core.config import PromotionConfig
from model.registry import CHALLENGER, CHAMPION

TAG_PREFIX = "promotion."
MOVE_PREFIX = "champion."
LOG_SUFFIX = ".promotions"


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

    def figures(self) -> dict[str, float]:
        values = {
            "challenger_log_loss": self.challenger_log_loss,
            "champion_log_loss": self.champion_log_loss,
            "challenger_roc_auc": self.challenger_auc,
            "champion_roc_auc": self.champion_auc,
        }
        return {k: float(v) for k, v in values.items() if v is not None}


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


def gate(
    challenger: list[dict],
    champion: list[dict] | None,
    champion_version: str | None,
    policy: PromotionConfig,
) -> Decision:
    """Decide on the per-origin evidence of both versions (see module docstring)."""
    ll = _mean(challenger, "log_loss") if challenger else float("nan")
    if champion_version is None:
        return Decision(True, "no champion yet", ll)
    mine, other = common_origins(challenger, champion or [])
    if not mine:
        return Decision(
            False,
            f"champion v{champion_version} was not evaluated on any of this run's "
            "origins with the same rows, so the two cannot be compared; challenger "
            "not promoted (`propensity promote --force` overrides, with a reason)",
            ll,
            None,
            champion_version,
        )
    ll, champ_ll = _mean(mine, "log_loss"), _mean(other, "log_loss")
    auc, champ_auc = _mean(mine, "roc_auc"), _mean(other, "roc_auc")
    gain, auc_loss = champ_ll - ll, champ_auc - auc
    origins = [e["origin"] for e in mine]
    figures = (
        f"mean log loss {ll:.6f} vs {champ_ll:.6f} (gain {gain:+.6f}, needs > "
        f"{policy.min_log_loss_gain:g}), mean ROC AUC {auc:.4f} vs {champ_auc:.4f} "
        f"(loss {auc_loss:+.4f}, allowed <= {policy.max_auc_loss:g}) on "
        f"{len(origins)} common origin(s) {origins[0]}..{origins[-1]}"
    )
    if gain <= policy.min_log_loss_gain:
        verdict, promote = "does not beat", False
    elif auc_loss > policy.max_auc_loss:
        verdict, promote = "beats on log loss but loses too much AUC to", False
    else:
        verdict, promote = "beats", True
    return Decision(
        promote,
        f"challenger {verdict} champion v{champion_version}: {figures}",
        ll,
        champ_ll,
        champion_version,
        auc,
        champ_auc,
        origins,
    )


def actor() -> str:
    """Who moves an alias: $PROPENSITY_USER, else the login name."""
    return os.environ.get("PROPENSITY_USER") or getpass.getuser()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def log_experiment(experiment: str) -> str:
    return experiment + LOG_SUFFIX


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
    name = log_experiment(experiment)
    found = client.get_experiment_by_name(name)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        # beside the project's artifacts when they are local files; a tracking
        # server chooses its own (the log holds no artifacts either way)
        main = client.get_experiment_by_name(experiment)
        base = main.artifact_location if main is not None else ""
        location = base.rstrip("/") + LOG_SUFFIX if base.startswith("file:") else None
        experiment_id = client.create_experiment(name, artifact_location=location)
    run = client.create_run(
        experiment_id,
        run_name=f"{entry['model']}: v{entry['from_version'] or '-'} -> "
        f"v{entry['to_version']}",
        tags={f"move.{k}": str(v) for k, v in entry.items()},
    )
    for key, value in figures.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)


def history(client: MlflowClient, experiment: str, name: str) -> list[dict]:
    """Every recorded move of `champion` for `name`, oldest first."""
    found = client.get_experiment_by_name(log_experiment(experiment))
    if found is None:
        return []
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`move.model` = '{name}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=10_000,
    )
    moves = [
        {
            **{
                k[len("move.") :]: v
                for k, v in r.data.tags.items()
                if k.startswith("move.")
            },
            "figures": dict(r.data.metrics),
        }
        for r in runs
    ]
    return sorted(moves, key=lambda m: m["moved_at"])


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
