"""Fairness report of a training run: how scores, calibration and outreach selection
differ between segments of customers (README: Fairness report).

Per value of each segment attribute (e.g. region, plan, an age band): rows,
positive rate, mean score and its 10th/50th/90th percentiles, expected calibration
error (10 equal-width bins, as `training.metrics`), the selection rate at the
outreach threshold and its ratio to the most-selected segment of that attribute.
Two flags: `four_fifths` (ratio under 0.8, the four-fifths rule) and
`calibration` (segment ECE over twice the overall ECE). Segments with fewer than
`min_segment_size` rows are reported, never flagged, and never set the reference
rate. A value exactly at a boundary (ratio 0.8, ECE twice the overall) is not
flagged.

The report describes scores; it never changes them. It holds no customer ids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import ibis.expr.types as ir
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from core.config import ConfigError, FairnessConfig
from features.columns import CUSTOMER_ID
from training.metrics import DECILES, calibration_table, checked, ece_of

MISSING = "missing"
FOUR_FIFTHS = 0.8
CALIBRATION_FACTOR = 2.0
BINS = 10
QUANTILES = (0.1, 0.5, 0.9)
FLAG_FOUR_FIFTHS = "four_fifths"
FLAG_CALIBRATION = "calibration"
# where the threshold came from: the config, or the top decile of the scores
THRESHOLD_CONFIG, THRESHOLD_TOP_DECILE = "config", "top_decile"


@dataclass(frozen=True)
class FairnessReport:
    """Overall figures, one row per (attribute, segment) and the reliability
    curve (`calibration_table` rows) of each segment, keyed "attribute=segment"."""

    threshold: float
    threshold_source: str
    overall: dict
    segments: list[dict]
    curves: dict[str, list[dict]]

    @property
    def flagged(self) -> list[str]:
        """ "attribute=segment (flag, flag)" for every flagged segment."""
        out = []
        for row in self.segments:
            flags = [f for f in (FLAG_FOUR_FIFTHS, FLAG_CALIBRATION) if row[f]]
            if flags:
                out.append(f"{row['attribute']}={row['segment']} ({', '.join(flags)})")
        return out

    def count(self, flag: str) -> int:
        return sum(bool(row[flag]) for row in self.segments)


def band_names(edges: list[float]) -> list[str]:
    """Labels of the buckets cut by `edges`: "<e0", then [e_i, e_i+1) as
    "18-29" for whole-number edges (else "0.5-<1"), then "e_last+"."""

    def whole(x: float) -> bool:
        return float(x).is_integer()

    names = [f"<{edges[0]:g}"]
    for lo, hi in zip(edges, edges[1:], strict=False):
        if whole(lo) and whole(hi):
            top = int(hi) - 1
            names.append(f"{int(lo)}" if top == int(lo) else f"{int(lo)}-{top}")
        else:
            names.append(f"{lo:g}-<{hi:g}")
    return [*names, f"{edges[-1]:g}+"]


def band_labels(values: ArrayLike, edges: list[float]) -> NDArray[np.object_]:
    """The bucket label of each value (`band_names`), "missing" for nulls."""
    v = pd.to_numeric(pd.Series(values, dtype=object)).to_numpy(
        dtype=float, na_value=np.nan
    )
    index = np.searchsorted(np.asarray(edges, dtype=float), v, side="right")
    out = np.asarray(band_names(edges), dtype=object)[np.minimum(index, len(edges))]
    out[np.isnan(v)] = MISSING
    return out


def _categories(values: ArrayLike) -> NDArray[np.object_]:
    series = pd.Series(values, dtype=object)
    return np.where(series.isna(), MISSING, series.astype(str)).astype(object)


def _is_number(values: ArrayLike) -> bool:
    series = pd.Series(values)
    return pd.api.types.is_numeric_dtype(series) and not (
        pd.api.types.is_bool_dtype(series)
    )


def top_decile_threshold(p: ArrayLike) -> float:
    """The lowest score of decile 1 as the nightly job ranks (serving.batch.score
    `deciles`: fewer than a tenth of the scores strictly higher), so that
    `p >= threshold` selects exactly its decile 1."""
    p = np.asarray(p, dtype=float)
    ordered = np.sort(p)
    higher = p.size - np.searchsorted(ordered, p, side="right")
    return float(p[DECILES * higher < p.size].min())


def _describe(y: NDArray, p: NDArray, selected: NDArray) -> dict:
    q10, q50, q90 = np.quantile(p, QUANTILES)
    return {
        "n": int(y.size),
        "positives": int(y.sum()),
        "positive_rate": float(y.mean()),
        "mean_score": float(p.mean()),
        "score_p10": float(q10),
        "score_p50": float(q50),
        "score_p90": float(q90),
        "ece": ece_of(calibration_table(y, p, BINS)),
        "selection_rate": float(selected.mean()),
    }


def _over(value: float, limit: float) -> bool:
    return value > limit and not math.isclose(value, limit)


def _under(value: float, limit: float) -> bool:
    return value < limit and not math.isclose(value, limit)


def segment_labels(
    segments: Mapping[str, ArrayLike], bands: Mapping[str, list[float]]
) -> dict[str, NDArray[np.object_]]:
    """Each attribute's values as segment labels: banded when it has bands, else
    its values as text; nulls are "missing". A number without bands is an error."""
    out = {}
    for name, values in segments.items():
        if name in bands:
            out[name] = band_labels(values, bands[name])
        elif _is_number(values):
            raise ValueError(
                f"fairness.bands: segment {name!r} is numeric; give its bucket "
                f"edges in fairness.bands.{name}"
            )
        else:
            out[name] = _categories(values)
    return out


def _order(name: str, labels: NDArray, bands: Mapping[str, list[float]]) -> list:
    present = set(labels)
    order = band_names(bands[name]) if name in bands else sorted(present - {MISSING})
    return [v for v in [*order, MISSING] if v in present]


def assess(
    p: ArrayLike,
    y: ArrayLike,
    segments: Mapping[str, ArrayLike],
    settings: FairnessConfig,
) -> FairnessReport:
    """The fairness report of probabilities `p` with outcomes `y`, one row per
    segment of each attribute in `segments` (arrays aligned with `p`)."""
    y, p = checked(y, p)
    if settings.threshold is None:
        threshold, source = top_decile_threshold(p), THRESHOLD_TOP_DECILE
    else:
        threshold, source = settings.threshold, THRESHOLD_CONFIG
    selected = p >= threshold
    overall = _describe(y, p, selected)
    limit = CALIBRATION_FACTOR * overall["ece"]
    rows, curves = [], {}
    for name, labels in segment_labels(segments, settings.bands).items():
        if len(labels) != p.size:
            raise ValueError(f"segment {name!r} has {len(labels)} values for {p.size}")
        group = []
        for value in _order(name, labels, settings.bands):
            mask = labels == value
            row = {"attribute": name, "segment": value}
            row |= _describe(y[mask], p[mask], selected[mask])
            row["small"] = row["n"] < settings.min_segment_size
            group.append(row)
            curves[f"{name}={value}"] = calibration_table(y[mask], p[mask], BINS)
        large = [r["selection_rate"] for r in group if not r["small"]]
        reference = max(large or [r["selection_rate"] for r in group])
        for row in group:
            ratio = row["selection_rate"] / reference if reference > 0 else math.nan
            row["selection_ratio"] = ratio
            row[FLAG_FOUR_FIFTHS] = not row["small"] and _under(ratio, FOUR_FIFTHS)
            row[FLAG_CALIBRATION] = not row["small"] and _over(row["ece"], limit)
        rows += group
    return FairnessReport(threshold, source, overall, rows, curves)


def check_segments(customers: ir.Table | None, settings: FairnessConfig) -> None:
    """Refuse, naming `fairness.segments`, segments the customers table cannot
    give: unknown names, timestamps, numbers without bands."""
    if not settings.segments:
        return
    if customers is None:
        raise ConfigError(
            "fairness.segments names customer attributes but there is no "
            "customers table (set data.customers or empty fairness.segments)"
        )
    schema = customers.schema()
    available = [c for c in schema.names if c != CUSTOMER_ID]
    unknown = [s for s in settings.segments if s not in available]
    if unknown:
        raise ConfigError(
            f"fairness.segments: {unknown} not in the customers table; "
            f"available attributes: {available}"
        )
    for name in settings.segments:
        dtype = schema[name]
        if dtype.is_timestamp() or dtype.is_date():
            raise ConfigError(
                f"fairness.segments: {name!r} is a date or time; segments are "
                "categories or banded numbers"
            )
        if dtype.is_numeric() and name not in settings.bands:
            raise ConfigError(
                f"fairness.segments: {name!r} is numeric; give its bucket edges "
                f"in fairness.bands.{name} (e.g. {name}: [18, 30, 45, 60])"
            )


def segment_values(
    customer_ids: ArrayLike,
    rows: pd.DataFrame,
    customers: ir.Table | None,
    names: list[str],
) -> dict[str, NDArray]:
    """Each segment attribute's value for `customer_ids`, in their order: from
    `rows` (the same rows, holding the attribute as a model feature) when it is
    a column there, else from the customers table by customer id."""
    ids = np.asarray(customer_ids)
    out = {n: rows[n].to_numpy() for n in names if n in rows.columns}
    rest = [n for n in names if n not in out]
    if rest:
        if customers is None:
            raise ConfigError("fairness.segments needs a customers table")
        table = customers.select(CUSTOMER_ID, *rest).to_pandas()
        table = table.drop_duplicates(CUSTOMER_ID).set_index(CUSTOMER_ID)
        found = table.reindex(pd.Index(ids, name=CUSTOMER_ID))
        out |= {n: found[n].to_numpy() for n in rest}
    return {n: out[n] for n in names}
