"""Uplift on a real randomised experiment: Hillstrom, visit, women's e-mail
against no e-mail.

The customers of `features.sources.adapters.hillstrom` (what `propensity import
hillstrom` writes): treated = sent the women's e-mail, control = sent nothing;
outcome = a visit in the two weeks after; features = Hillstrom's pre-send
columns (recency, history, mens, womens, zip_code, newbie, channel;
history_segment is a binning of history and left out). Over the keyed-hash
splits of training.uplift (held-out share 0.3), on each split's held-out
customers: the T- and X-learners (training.uplift.fit, the project's uplift
settings), "rank by probability" (a LightGBM visit-probability model fitted
on the split's treated training customers: who visits when e-mailed, what a
response model targets) and random targeting (a keyed random order), by the
Qini coefficient and uplift at 30%.

Goal: the chosen learner (the one training.uplift would register: the higher
mean Qini) above both "rank by probability" and random on the mean over splits.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.harness import PROJECT_ROOT, write_json
from core.config.training import UpliftConfig
from features.columns import CUSTOMER_ID, EVENT_TYPE
from features.sources import adapters
from model.encoding import Encoding
from training.uplift import (
    APPROACHES,
    OUTCOME_COLUMN,
    PROBABILITY,
    RANDOM,
    TREATED_COLUMN,
    evaluate,
)

DATA = PROJECT_ROOT.parent / "shared" / "data"
HILLSTROM_FILE = Path("hillstrom") / "hillstrom.csv"
CAMPAIGN = "hillstrom-womens"
FEATURES = ("recency", "history", "mens", "womens", "zip_code", "newbie", "channel")
CATEGORICAL = ("zip_code", "channel")
PREFIX = "hillstrom_womens_visit"
SPLITS = 5


def hillstrom_frame(path: Path) -> pd.DataFrame:
    """One row per customer of the women's campaign (treatment and the shared
    no-e-mail control): features, treated, outcome (visit)."""
    found = adapters.hillstrom(path)
    customers = found.customers.to_pandas()
    groups = pd.DataFrame(found.campaigns[CAMPAIGN], columns=[CUSTOMER_ID, "group"])
    events = found.events.to_pandas()
    visited = set(events.loc[events[EVENT_TYPE] == adapters.VISIT_EVENT, CUSTOMER_ID])
    frame = groups.merge(customers, on=CUSTOMER_ID, how="left", validate="1:1")
    frame[TREATED_COLUMN] = (frame["group"] == "treatment").astype("int64")
    frame[OUTCOME_COLUMN] = frame[CUSTOMER_ID].isin(visited).astype("int64")
    return frame


def hillstrom_comparison(
    data_dir: Path = DATA, splits: int = SPLITS, settings: UpliftConfig | None = None
) -> dict[str, Any]:
    """The figures (see the module docstring): `<prefix>_qini_<approach>` and
    `<prefix>_uplift_at_30_<approach>` means over the splits, each with `_std`;
    approach `uplift` is the chosen learner, also under its own name (t, x)."""
    started = time.perf_counter()
    frame = hillstrom_frame(Path(data_dir) / HILLSTROM_FILE)
    encoding = Encoding.fit(frame, FEATURES, CATEGORICAL)
    evaluation = evaluate(
        frame, encoding, "visit", settings or UpliftConfig(), splits=splits
    )
    summary = evaluation.summary()
    chosen = evaluation.best_learner()
    out: dict[str, Any] = {
        f"{PREFIX}_customers": len(frame),
        f"{PREFIX}_treated": int(frame[TREATED_COLUMN].sum()),
        f"{PREFIX}_splits": splits,
        f"{PREFIX}_chosen_learner": chosen,
    }
    for name, approach in [("uplift", chosen), *((a, a) for a in APPROACHES)]:
        for figure in ("qini", "uplift_at_30"):
            for suffix in ("", "_std"):
                value = summary[approach][figure + suffix]
                out[f"{PREFIX}_{figure}_{name}{suffix}"] = value
    uplift = out[f"{PREFIX}_qini_uplift"]
    out[f"{PREFIX}_goal_met"] = bool(
        uplift > out[f"{PREFIX}_qini_{PROBABILITY}"]
        and uplift > out[f"{PREFIX}_qini_{RANDOM}"]
    )
    out[f"{PREFIX}_s"] = time.perf_counter() - started
    return out


def render(figures: dict[str, Any]) -> str:
    """The table: per approach mean Qini and uplift@30% with their spreads."""
    p = PREFIX
    lines = [
        f"Hillstrom, visit, women's e-mail vs none: {figures[f'{p}_customers']:,} "
        f"customers ({figures[f'{p}_treated']:,} treated), "
        f"{figures[f'{p}_splits']} keyed-hash splits (held out 0.3)",
        f"{'ranking':34} {'Qini (mean +- sd)':>24} {'uplift@30% (mean +- sd)':>26}",
    ]
    labels = {
        "uplift": f"uplift (chosen: {figures[f'{p}_chosen_learner']})",
        "t": "  T-learner",
        "x": "  X-learner",
        PROBABILITY: "rank by P(visit | e-mailed)",
        RANDOM: "random",
    }
    for name, label in labels.items():
        q, qs = figures[f"{p}_qini_{name}"], figures[f"{p}_qini_{name}_std"]
        u, us = (
            figures[f"{p}_uplift_at_30_{name}"],
            figures[f"{p}_uplift_at_30_{name}_std"],
        )
        lines.append(f"{label:34} {q:>14.5f} +- {qs:.5f} {u:>16.4f} +- {us:.4f}")
    met = "met" if figures[f"{p}_goal_met"] else "NOT met"
    lines.append(
        f"goal: chosen uplift model's mean Qini above rank-by-probability and "
        f"random: {met}  ({figures[f'{p}_s']:.1f} s)"
    )
    return "\n".join(lines)


def run_uplift(data: Path = DATA, results: Path = Path("bench/results")) -> dict:
    """Print the comparison and write results/uplift.json."""
    figures = hillstrom_comparison(data)
    print(render(figures), flush=True)
    write_json(Path(results) / "uplift.json", figures)
    return figures
