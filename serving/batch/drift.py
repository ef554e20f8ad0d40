"""Drift of the nightly population against each champion's training reference.

The reference (model.drift) travels in each registered model's metadata. While
the nightly job scores, `DriftMonitor.add` counts every batch's feature values and
scores into the reference's bins; `DriftMonitor.report` then gives the PSI per
feature and per score, the missing and out-of-range shares beside training's, and a
level per item against the config's thresholds (PSI >= warn: warn, >= alert: alert;
a feature in the config's `ignore` list: ignored). A feature read by several
champions is counted once per distinct reference (the three champions of one
training run share theirs); its PSI is the largest against any of them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.config import DriftConfig
from model.drift import Counts, Reference

OK, WARN, ALERT, IGNORED = "ok", "warn", "alert", "ignored"


def level(
    value: float,
    thresholds: DriftConfig,
    name: str | None = None,
    calendar: Collection[str] = (),
) -> str:
    """ok, warn or alert by the thresholds; `ignored` for a drifted feature the
    config ignores, or one of `calendar` (grows with the calendar by construction)
    unless the config alerts on those."""
    quiet = name is not None and (
        name in thresholds.ignore
        or (name in calendar and not thresholds.alert_calendar_features)
    )
    if quiet and value >= thresholds.warn:
        return IGNORED
    if value >= thresholds.alert:
        return ALERT
    return WARN if value >= thresholds.warn else OK


@dataclass
class DriftMonitor:
    """Streaming counts against the references of the champions that have one."""

    # target -> its model's reference (metadata "reference"); None: trained
    # before references were kept
    references: Mapping[str, dict | None]
    # target -> its population's name: a feature's counts are shared only by
    # targets scoring the same rows
    populations: Mapping[str, str] = field(default_factory=dict)
    features: dict[str, dict[str, Counts]] = field(init=False, default_factory=dict)
    scores: dict[str, Counts] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        shared: dict[tuple[str, Reference, str | None], Counts] = {}
        for target, ref in self.references.items():
            if not ref:
                continue
            self.scores[target] = Counts(Reference.from_dict(ref["score"]))
            self.features[target] = {}
            for name, data in ref["features"].items():
                key = (name, Reference.from_dict(data), self.populations.get(target))
                shared.setdefault(key, Counts(key[1]))
                self.features[target][name] = shared[key]

    @property
    def missing(self) -> list[str]:
        """Targets whose champion has no reference (drift not measured)."""
        return [t for t, ref in self.references.items() if not ref]

    def add(
        self,
        target: str,
        features: Sequence[str],
        matrix: np.ndarray,
        scores: np.ndarray,
        counted: set[int],
    ) -> None:
        """Count one batch: `matrix` in `features` order (the rows of the
        target's population), the target's calibrated `scores`. `counted` (ids
        of the Counts already fed this batch, shared across targets) keeps a
        shared feature from being counted twice."""
        if target not in self.scores:
            return
        self.scores[target].add(scores)
        per_feature = self.features[target]
        for j, name in enumerate(features):
            counts = per_feature.get(name)
            if counts is not None and id(counts) not in counted:
                counts.add(matrix[:, j])
                counted.add(id(counts))

    def report(
        self,
        thresholds: DriftConfig,
        calendar: Collection[str] = (),
        **context: object,
    ) -> dict:
        """The drift report as a JSON-ready dict, features by PSI, largest first.
        `calendar`: the features that grow with the calendar by construction
        (the catalogue's `calendar`), quiet unless the config alerts on them."""
        by_feature: dict[str, dict[str, Counts]] = {}
        for target, per_feature in self.features.items():
            for name, counts in per_feature.items():
                by_feature.setdefault(name, {})[target] = counts
        features = sorted(
            (
                _feature_item(name, c, thresholds, calendar)
                for name, c in by_feature.items()
            ),
            key=lambda item: -item["psi"],
        )
        scores = [{"target": t, **_item(c, thresholds)} for t, c in self.scores.items()]
        items = [(f["feature"], f["level"]) for f in features] + [
            (f"score:{s['target']}", s["level"]) for s in scores
        ]
        alerts = [name for name, lv in items if lv == ALERT]
        warnings = [name for name, lv in items if lv == WARN]
        return {
            **context,
            "thresholds": {"warn": thresholds.warn, "alert": thresholds.alert},
            "level": ALERT if alerts else WARN if warnings else OK,
            "alerts": alerts,
            "warnings": warnings,
            "without_reference": self.missing,
            "scores": scores,
            "features": features,
        }


def _item(
    counts: Counts,
    thresholds: DriftConfig,
    name: str | None = None,
    calendar: Collection[str] = (),
) -> dict:
    ref = counts.reference
    rows = counts.rows
    value = counts.psi() if rows else 0.0
    return {
        "psi": value,
        "level": level(value, thresholds, name, calendar) if rows else OK,
        "rows": rows,
        "reference_rows": ref.rows,
        "missing_share": float(counts.actual[-1]),
        "missing_share_training": ref.missing,
        "below_training_min": counts.below,
        "above_training_max": counts.above,
        "out_of_range_share": (counts.below + counts.above) / max(rows, 1),
        "training_min": ref.low,
        "training_max": ref.high,
        "bins": {
            "edges": list(ref.edges),
            "expected": ref.expected.tolist(),
            "actual": counts.actual.tolist(),
        },
    }


def _feature_item(
    name: str,
    per_target: dict[str, Counts],
    thresholds: DriftConfig,
    calendar: Collection[str] = (),
) -> dict:
    """One feature: the figures against the reference it drifted most from."""
    psis = {t: (c.psi() if c.rows else 0.0) for t, c in per_target.items()}
    worst = max(psis, key=lambda t: psis[t])
    return {
        "feature": name,
        "calendar": name in calendar,
        **_item(per_target[worst], thresholds, name, calendar),
        "psi_by_model": psis,
    }
