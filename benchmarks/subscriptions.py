"""Quality benchmark, contractual churn: the ChurnSim `socialnet7` subscription log.

Protocol `churnsim_subs` (run by `benchmarks.quality.run_quality` when
../shared/data/churnsim_socialnet7 is present): contract churn (a term ends in the
30 days after an origin and no term starts within 30 days of its end; eligible:
customers with a term in force at the origin), at the monthly origins
2020-08-01 .. 2020-11-01 (the last whose window and grace end by the data's end,
2021-01-01). Training rows: monthly cutoffs from 2020-02-01 whose window and grace
end by the origin. Three scorers on the same rows:

- the pipeline's model on every feature (events, account attributes, subscription
  features): `subs_churn_auc`, `subs_churn_logloss` (means over the origins);
- the same model on the event and attribute features only (no subscription
  feature): `subs_churn_events_only_auc`, `..._logloss`;
- a days-to-renewal heuristic, 1 / (1 + days to the end of the current term)
  (ranking only): `subs_churn_renewal_heuristic_auc`.

Models are fitted as the other protocols fit theirs (training/origin_model.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.harness import load_quietly
from core.config import ChurnTarget, DataConfig
from features.columns import CHURN, CONTRACT, CUSTOMER_ID
from features.definition import Catalogue
from features.sources import adapters
from features.subscriptions import DAYS_TO_TERM_END, subscription_features
from training.origin_model import Candidate, Memo, model_for, rows_at, scores

if TYPE_CHECKING:
    from features.sources.load import Dataset
    from training.dataset import TrainingTable

CHURNSIM_FILE = Path("churnsim_socialnet7") / "events.parquet"
CHURNSIM_AS_OF = datetime(2021, 1, 2)
SUBS_HORIZON_DAYS, SUBS_GRACE_DAYS = 30, 30
SUBS_FIRST_CUTOFF = datetime(2020, 2, 1)
SUBS_ORIGINS = tuple(datetime(2020, m, 1) for m in (8, 9, 10, 11))
PREFIX = "subs_churn"
SUBS_GOAL_AUC = 0.74  # issue 17: socialnet7 contract churn, mean of the origins
SUBS_KEYS = (
    f"{PREFIX}_auc",
    f"{PREFIX}_events_only_auc",
    f"{PREFIX}_renewal_heuristic_auc",
)


def churnsim_data(source: Path, workdir: Path) -> Dataset:
    """ChurnSim events, accounts and subscription terms in the contract, loaded."""
    folder, out = Path(source).parent, Path(workdir) / "churnsim"
    write = adapters.write_contract
    events = write(adapters.churnsim_events(folder), out / "events.parquet")
    customers = write(adapters.churnsim_customers(folder), out / "customers.parquet")
    terms = write(
        adapters.churnsim_subscriptions(folder), out / "subscriptions.parquet"
    )
    return load_quietly(
        events, customers, CHURNSIM_AS_OF, threads=2, subscriptions=terms
    )


def events_only(table: TrainingTable, spec_names: set[str]) -> TrainingTable:
    """The same rows, with a catalogue without the subscription features."""
    kept = tuple(f for f in table.catalogue.features if f.name not in spec_names)
    return dataclasses.replace(table, catalogue=Catalogue(kept))


def heuristic(rows) -> np.ndarray:
    """1 / (1 + days to the current term's end): the nearer, the likelier."""
    days = rows[DAYS_TO_TERM_END].astype("float64").to_numpy()
    return np.where(np.isnan(days), 0.0, 1.0 / (1.0 + np.maximum(days, 0.0)))


def churnsim_subs(
    ds: Dataset,
    candidates: Sequence[Candidate],
    origins: Sequence[datetime] = SUBS_ORIGINS,
    first_cutoff: datetime = SUBS_FIRST_CUTOFF,
    shared=None,
):
    """Contract churn at each origin: model, events-only model, heuristic
    (`shared`: quality.Shared, the run's tables and fits on this dataset)."""
    from benchmarks.quality import (
        MODEL,
        Protocol,
        Scored,
        Shared,
        _add_margin,
        _cell,
        _choices,
        grid,
        project_config,
    )
    from features.definition import FeatureSpec

    start = time.perf_counter()
    gap = SUBS_HORIZON_DAYS + SUBS_GRACE_DAYS  # a label is known this long after
    cutoffs = grid(first_cutoff, max(origins), "MS")
    config = project_config(ds, adapters.ROLES["churnsim"], SUBS_HORIZON_DAYS, cutoffs)
    config = config.model_copy(
        update={
            "data": DataConfig(
                events=ds.events_files[0],
                customers=ds.customers_files[0],
                subscriptions=ds.subscriptions_files[0],
            ),
            "targets": config.targets.model_copy(
                update={
                    "churn": ChurnTarget(
                        horizon_days=SUBS_HORIZON_DAYS,
                        definition=CONTRACT,
                        grace_days=SUBS_GRACE_DAYS,
                    )
                }
            ),
        }
    )
    table, memo = (shared or Shared()).table(ds, config)
    names = {f.name for f in subscription_features(FeatureSpec.from_config(config))}
    plain = events_only(table, names)
    p = Protocol(
        "churnsim_subs",
        [
            f"ChurnSim socialnet7: contract churn (a term ends in the "
            f"{SUBS_HORIZON_DAYS} days after the origin, no new term within "
            f"{SUBS_GRACE_DAYS} days); eligible: a term in force at the origin",
            f"origins {', '.join(f'{o:%Y-%m-%d}' for o in origins)}; training: "
            f"monthly cutoffs from {first_cutoff:%Y-%m-%d} whose window and grace "
            "end by the origin",
            "model: every feature; events only: no subscription feature; "
            "heuristic: 1 / (1 + days to the term's end)",
        ],
    )
    p.lines.append(
        f"{'origin':<12}{'rows':>6}{'churn':>6}{'model AUC':>10}{'log loss':>9}"
        f"{'events AUC':>11}{'log loss':>9}{'heuristic':>10}"
    )
    per: dict[str, list[float]] = {}
    scored, chosen = [], []
    # fits reused where an origin's inner origin trains on an earlier origin's rows
    memos = memo, Memo(plain)
    for origin in origins:
        test = rows_at(table, [origin])
        y = test[CHURN].to_numpy()
        model = model_for(table, CHURN, gap, origin, candidates, memo=memos[0])
        base = model.baseline_predictions(test)
        served = model.predict(test, base)[1]
        events = model_for(
            plain, CHURN, gap, origin, candidates, memo=memos[1]
        ).predict(test)[1]
        found = {
            "": scores(y, served),
            "_events_only": scores(y, events),
            "_renewal_heuristic": {"auc": scores(y, heuristic(test))["auc"]},
            "_logreg": scores(y, base["logreg"]),
            "_recency": scores(y, base["recency"]),
        }
        scored.append(
            Scored(
                f"{origin:%Y-%m-%d}",
                test[CUSTOMER_ID].to_numpy(),
                y,
                {
                    MODEL: served,
                    "events_only": events,
                    "renewal_heuristic": heuristic(test),
                    **base,
                },
            )
        )
        chosen.append(_choices(f"{origin:%Y-%m-%d}", model))
        for kind, values in found.items():
            for metric, value in values.items():
                per.setdefault(f"{PREFIX}{kind}_{metric}", []).append(value)
        p.lines.append(
            f"{origin:%Y-%m-%d}  {len(test):>6,}{int(y.sum()):>6,}"
            f"{_cell(found['']['auc']):>10}{_cell(found['']['logloss']):>9}"
            f"{_cell(found['_events_only']['auc']):>11}"
            f"{_cell(found['_events_only']['logloss']):>9}"
            f"{_cell(found['_renewal_heuristic']['auc']):>10}"
        )
    p.lines += ["choices (AUC/log loss at the inner origin):", *chosen]
    # the heuristic ranks only (its log loss means nothing): AUC against it only
    _add_margin(p, PREFIX, scored, ["events_only", "logreg", "recency"])
    p.figures |= {key: float(np.mean(values)) for key, values in per.items()}
    p.figures |= {f"{key}_by_origin": values for key, values in per.items()}
    p.figures |= {
        f"{PREFIX}_origin_dates": [f"{o:%Y-%m-%d}" for o in origins],
        f"{PREFIX}_horizon_days": SUBS_HORIZON_DAYS,
        f"{PREFIX}_grace_days": SUBS_GRACE_DAYS,
        f"{PREFIX}_rows": int(sum(len(rows_at(table, [o])) for o in origins)),
    }
    won = sum(
        a > b
        for a, b in zip(
            per[f"{PREFIX}_auc"], per[f"{PREFIX}_events_only_auc"], strict=True
        )
    )
    p.goals.append(
        (
            f"goal_{PREFIX}_beats_events_only",
            f"subscription features lift AUC over events only at every origin "
            f"({won} of {len(origins)})",
            won == len(origins),
        )
    )
    mean = float(np.mean(per[f"{PREFIX}_auc"]))
    p.goals.append(
        (
            f"goal_{PREFIX}_auc_met",
            f"contract churn mean AUC >= {SUBS_GOAL_AUC:.2f} ({mean:.4f})",
            mean >= SUBS_GOAL_AUC,
        )
    )
    p.seconds = time.perf_counter() - start
    return p
