"""Reason codes: the features that pushed a customer's score up, in plain words.

Contributions are those of the *uncalibrated* booster, in its raw log-odds space:
per row they add up, with the bias, to the booster's raw score, not to the
calibrated probability the API serves. The calibration map is monotone, so a
feature that raises the raw score raises the served probability too; the sizes are
comparable within a model, not across models. By default they are LightGBM's own
SHAP values (`pred_contrib=True`, TreeSHAP); `method="path"` uses the much cheaper
path attribution (see `serving.attribution` for the trade-off).

Only positive contributions are reasons: they answer "why is this customer likely
to churn / purchase / ask for service", and a customer whose score no feature
raises gets fewer than `k` reasons (possibly none) rather than reasons that argue
the other way.

Phrases come from a small template table keyed by the feature catalogue's naming
structure (`{role}_count_{w}d`, `days_since_last_{role}`, ...; see
`features.definition`), so every event feature has words without a list of names
to maintain. Anything else falls back to "<description>: <value>".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from features.columns import ACTIVITY, CANCEL, PURCHASE, ROLES, SERVICE_REQUEST
from model.registry import RegisteredModel
from serving.attribution import Method, contributions

Value = float | str | None


@dataclass(frozen=True)
class Reason:
    """One feature's push towards the positive class, for one customer."""

    feature: str
    # The customer's value: a number, a categorical's string, None when missing.
    value: Value
    # SHAP value in the booster's raw log-odds space (always > 0 here).
    contribution: float
    phrase: str


def reasons(
    model: RegisteredModel,
    matrix: np.ndarray,
    k: int,
    exclude: Collection[str] = frozenset(),
    descriptions: Mapping[str, str] | None = None,
    method: Method = "shap",
) -> list[list[Reason]]:
    """Per row of `matrix` (in the model's encoding order), at most `k` reasons:
    the features with the largest positive contributions, largest first (ties by
    feature order). Features in `exclude` are never reasons; names the model does
    not read are ignored. `descriptions` (feature -> catalogue description) words
    the fallback phrase; without it the feature name is used. One attribution
    call for the whole matrix: pass every row that needs reasons at once."""
    features = model.encoding.features
    if k < 0:
        raise ValueError(f"k: must be >= 0, got {k}")
    if matrix.ndim != 2 or matrix.shape[1] != len(features):
        raise ValueError(
            f"matrix: expected {len(features)} columns in the encoding's order "
            f"for {model.name}, got shape {matrix.shape}"
        )
    allowed = np.array([f not in exclude for f in features], dtype=bool)
    k = min(k, int(allowed.sum()))
    if k == 0 or len(matrix) == 0:
        return [[] for _ in range(len(matrix))]
    contrib = contributions(model.booster, matrix, method)[:, :-1]
    contrib[:, ~allowed] = -np.inf
    top = top_columns(contrib, k)
    descriptions = descriptions or {}
    vocab = model.encoding.vocabularies
    out = []
    for i, row in enumerate(top):
        found = []
        for j in row:
            c = float(contrib[i, j])
            if c <= 0:
                break
            name = features[j]
            value = _decode(matrix[i, j], vocab.get(name))
            found.append(
                Reason(name, value, c, phrase(name, value, descriptions.get(name)))
            )
        out.append(found)
    return out


def top_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the column indices of the `k` largest scores, largest first; equal
    scores in column order. `argpartition` picks them in linear time; only those
    `k` are sorted."""
    n, m = scores.shape
    if k >= m:
        picked = np.broadcast_to(np.arange(m), (n, m))
    else:
        picked = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    picked_scores = np.take_along_axis(scores, picked, axis=1)
    # lexsort: last key first; ties in score keep the lower column index first
    order = np.lexsort((picked, -picked_scores), axis=1)
    return np.take_along_axis(picked, order, axis=1)


def _decode(raw: float, vocabulary: tuple[str, ...] | None) -> Value:
    if math.isnan(raw):
        return None
    if vocabulary is None:
        return float(raw)
    code = int(raw)
    return vocabulary[code] if 0 <= code < len(vocabulary) else None


# --- phrases -------------------------------------------------------------------

# (singular, plural) nouns for a role's events
_NOUNS = {
    ACTIVITY: ("activity event", "activity events"),
    PURCHASE: ("purchase", "purchases"),
    SERVICE_REQUEST: ("service request", "service requests"),
    CANCEL: ("cancellation", "cancellations"),
    None: ("event", "events"),
}
_ROLE = "(?P<role>" + "|".join(sorted(ROLES, key=len, reverse=True)) + ")"


def number(value: float) -> str:
    """45.0 -> '45', 1234.5 -> '1,234', 0.456 -> '0.46'."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _count(value: float, role: str | None) -> str:
    singular, plural = _NOUNS[role]
    return f"{number(value)} {singular if value == 1 else plural}"


def _days(value: float) -> str:
    return f"{number(value)} day" + ("" if value == 1 else "s")


def _last(w: str) -> str:
    return f"in the last {w} days"


def _trend_diff(value: float, role: str | None, t: str) -> str:
    more = "more" if value >= 0 else "fewer"
    return (
        f"{_count(abs(value), role)} {more} in the last {t} days "
        f"than in the {t} days before"
    )


# A template gets (role, window, value); role and window are None where the
# pattern has none. `MISSING` words the patterns whose null has a meaning.
Template = Callable[[str | None, str | None, float], str]
MissingTemplate = Callable[[str | None, str | None], str]


def _never(role: str | None) -> str:
    return f"no {_NOUNS[role][0]} on record"


# Keyed by the catalogue's name patterns; `{role}` is any role, `{w}` any window.
TEMPLATES: dict[str, Template] = {
    "{role}_count_{w}d": lambda r, w, v: f"{_count(v, r)} {_last(w)}",
    "{role}_days_{w}d": lambda r, w, v: f"{_NOUNS[r][1]} on {_days(v)} {_last(w)}",
    "active_days_{w}d": lambda r, w, v: f"active on {_days(v)} {_last(w)}",
    "active_day_share_{w}d": lambda r, w, v: (
        f"active on {v * 100:.0f}% of days {_last(w)}"
    ),
    "{role}_amount_sum_{w}d": lambda r, w, v: (
        f"{_NOUNS[r][1]} totalling {number(v)} {_last(w)}"
    ),
    "{role}_amount_mean_{w}d": lambda r, w, v: (
        f"average {_NOUNS[r][0]} amount of {number(v)} {_last(w)}"
    ),
    "{role}_amount_max_{w}d": lambda r, w, v: (
        f"largest {_NOUNS[r][0]} amount of {number(v)} {_last(w)}"
    ),
    "{role}_quantity_sum_{w}d": lambda r, w, v: (
        f"{number(v)} units in {_NOUNS[r][1]} {_last(w)}"
    ),
    "days_since_last_{role}": lambda r, w, v: f"no {_NOUNS[r][0]} for {_days(v)}",
    "days_since_last_event": lambda r, w, v: f"no activity of any kind for {_days(v)}",
    "days_since_first_purchase": lambda r, w, v: f"first purchase {_days(v)} ago",
    "tenure_days": lambda r, w, v: f"customer for {_days(v)}",
    "{role}_count_total": lambda r, w, v: f"{_count(v, r)} in total",
    "reactivations": lambda r, w, v: (
        f"came back after a cancellation {number(v)} " + ("time" if v == 1 else "times")
    ),
    "service_requests_per_purchase": lambda r, w, v: (
        f"{number(v)} service requests per purchase"
    ),
    "active_day_gap_mean": lambda r, w, v: f"{_days(v)} between active days on average",
    "active_day_gap_std": lambda r, w, v: (
        f"gaps between active days vary by {_days(v)} (standard deviation)"
    ),
    "event_count_ratio_{w}d": lambda r, w, v: (
        f"events in the last {w} days at {number(v)}x the {w} days before"
    ),
    "purchase_count_ratio_{w}d": lambda r, w, v: (
        f"purchases in the last {w} days at {number(v)}x the {w} days before"
    ),
    "event_count_diff_{w}d": lambda r, w, v: _trend_diff(v, None, w),
    "purchase_count_diff_{w}d": lambda r, w, v: _trend_diff(v, PURCHASE, w),
    # behaviour features (features.behaviour)
    "overdue_event": lambda r, w, v: (
        f"quiet for {number(v)}x the usual gap between active days"
    ),
    "purchase_gap_mean": lambda r, w, v: f"{_days(v)} between purchases on average",
    "overdue_purchase": lambda r, w, v: (
        f"no purchase for {number(v)}x the usual gap between purchases"
    ),
    "{role}_amount_diff_{w}d": lambda r, w, v: (
        f"{_NOUNS[r][1]} amounts {'up' if v >= 0 else 'down'} by {number(abs(v))} "
        f"in the last {w} days against the {w} days before"
    ),
    "active_day_gap_last": lambda r, w, v: (
        f"{_days(v)} between the last two active days"
    ),
    "event_dow_concentration": lambda r, w, v: _weekdays(v, None),
    "{role}_dow_concentration": lambda r, w, v: _weekdays(v, r),
    "event_count_slope_{w}w": lambda r, w, v: _slope(v, None, w),
    "purchase_count_slope_{w}w": lambda r, w, v: _slope(v, PURCHASE, w),
    # classic models (features.classic)
    "bgnbd_p_alive": lambda r, w, v: (
        f"{v * 100:.0f}% likely still an active buyer (purchase pattern)"
    ),
    "bgnbd_active_p_alive": lambda r, w, v: (
        f"{v * 100:.0f}% likely still active (activity pattern)"
    ),
    "bgnbd_p_purchase_{w}d": lambda r, w, v: (
        f"purchase pattern gives a {v * 100:.0f}% chance of buying in {w} days"
    ),
    "bgnbd_expected_purchases_{w}d": lambda r, w, v: (
        f"purchase pattern expects {number(v)} purchase days in {w} days"
    ),
    "bgnbd_p_active_{w}d": lambda r, w, v: (
        f"activity pattern gives a {v * 100:.0f}% chance of activity in {w} days"
    ),
    "bgnbd_expected_active_{w}d": lambda r, w, v: (
        f"activity pattern expects {number(v)} active days in {w} days"
    ),
    "gg_expected_spend": lambda r, w, v: f"expected spend of {number(v)} a purchase",
    # subscription features (features.subscriptions)
    "sub_active": lambda r, w, v: (
        "subscription in force" if v else "no subscription in force"
    ),
    "sub_days_to_term_end": lambda r, w, v: (
        "term ends today" if v == 0 else f"term ends in {_days(v)}"
    ),
    "sub_billing_period_days": lambda r, w, v: _billing(v),
    "sub_price": lambda r, w, v: f"pays {number(v)} per term",
    "sub_discount": lambda r, w, v: f"discount of {number(v)}",
    "sub_quantity": lambda r, w, v: f"{number(v)} units on the subscription",
    "sub_auto_renew": lambda r, w, v: (
        "renews automatically" if v else "does not renew automatically"
    ),
    "sub_tenure_days": lambda r, w, v: f"subscriber for {_days(v)}",
    "sub_terms_total": lambda r, w, v: _times(v, "subscription term"),
    "sub_renewals_total": lambda r, w, v: _times(v, "renewal"),
    "sub_plan_changes_total": lambda r, w, v: _times(v, "plan change"),
    "sub_gaps_total": lambda r, w, v: (
        f"came back after a lapse {number(v)} " + ("time" if v == 1 else "times")
    ),
    "sub_renewals_{w}d": lambda r, w, v: f"{_times(v, 'renewal')} {_last(w)}",
    "sub_upgrades_{w}d": lambda r, w, v: f"{_times(v, 'upgrade')} {_last(w)}",
    "sub_downgrades_{w}d": lambda r, w, v: f"{_times(v, 'downgrade')} {_last(w)}",
    "sub_days_since_plan_change": lambda r, w, v: f"plan changed {_days(v)} ago",
    "sub_price_per_activity_{w}d": lambda r, w, v: (
        f"pays {number(v)} per activity event {_last(w)}"
    ),
}
# a subscription's categorical feature, worded from its value
STRING_TEMPLATES: dict[str, Callable[[str], str]] = {
    "sub_plan": lambda v: f"on the {v} plan",
}


def _weekdays(value: float, role: str | None) -> str:
    return (
        f"{_NOUNS[role][1]} concentrated on few weekdays at {number(value)} "
        "(1/7 even, 1 one weekday)"
    )


def _slope(value: float, role: str | None, weeks: str) -> str:
    trend = "rising" if value >= 0 else "falling"
    return (
        f"weekly {_NOUNS[role][1]} {trend} by {number(abs(value))} a week "
        f"over the last {weeks} weeks"
    )


def _billing(days: float) -> str:
    named = {365: "annual plan", 30: "monthly plan", 7: "weekly plan"}
    return named.get(int(days), f"billed every {_days(days)}")


def _times(value: float, noun: str) -> str:
    return f"{number(value)} {noun}" + ("" if value == 1 else "s")


def _no_amount(role: str | None, w: str | None) -> str:
    return f"no {_NOUNS[role][0]} amounts {_last(w)}"


def _fewer_than_two(role: str | None, w: str | None) -> str:
    return "fewer than two active days"


MISSING: dict[str, MissingTemplate] = {
    "{role}_amount_mean_{w}d": _no_amount,
    "{role}_amount_max_{w}d": _no_amount,
    "days_since_last_{role}": lambda r, w: _never(r),
    "days_since_last_event": lambda r, w: _never(None),
    "days_since_first_purchase": lambda r, w: _never(PURCHASE),
    "service_requests_per_purchase": lambda r, w: "no purchases to compare with",
    "active_day_gap_mean": _fewer_than_two,
    "active_day_gap_std": _fewer_than_two,
    "overdue_event": _fewer_than_two,
    "purchase_gap_mean": lambda r, w: "fewer than two purchase days",
    "overdue_purchase": lambda r, w: "fewer than two purchase days",
    "active_day_gap_last": _fewer_than_two,
    "event_dow_concentration": lambda r, w: _never(None),
    "{role}_dow_concentration": lambda r, w: _never(r),
    "bgnbd_p_alive": lambda r, w: _never(PURCHASE),
    "bgnbd_p_purchase_{w}d": lambda r, w: _never(PURCHASE),
    "bgnbd_expected_purchases_{w}d": lambda r, w: _never(PURCHASE),
    "gg_expected_spend": lambda r, w: f"no {_NOUNS[PURCHASE][0]} amounts on record",
    "sub_days_to_term_end": lambda r, w: "no term end on record (open or none)",
    "sub_days_since_plan_change": lambda r, w: "plan never changed",
    "sub_tenure_days": lambda r, w: "never subscribed",
    "sub_price_per_activity_{w}d": lambda r, w: f"no activity to price {_last(w)}",
}


def _pattern(key: str) -> re.Pattern[str]:
    text = re.escape(key).replace(r"\{role\}", _ROLE).replace(r"\{w\}", r"(?P<w>\d+)")
    return re.compile(f"^{text}$")


_COMPILED = [(_pattern(key), key) for key in TEMPLATES]
_DAYS_SINCE_ATTRIBUTE = re.compile(r"^days_since_(?P<source>.+)$")


@lru_cache(maxsize=4096)
def template_key(feature: str) -> tuple[str, str | None, str | None] | None:
    """The template a feature name matches, with its role and window, or None."""
    for pattern, key in _COMPILED:
        found = pattern.match(feature)
        if found:
            parts = found.groupdict()
            return key, parts.get("role"), parts.get("w")
    return None


def phrase(feature: str, value: Value, description: str | None = None) -> str:
    """Words for one feature's value: a catalogue template, a customer attribute
    ("plan is basic", "signup_time 412 days ago"), else "<description>: <value>"."""
    if isinstance(value, str):
        if feature in STRING_TEMPLATES:
            return STRING_TEMPLATES[feature](value)
        return f"{feature} is {value}"
    matched = template_key(feature)
    if matched is not None:
        key, role, window = matched
        if value is not None:
            return TEMPLATES[key](role, window, value)
        if key in MISSING:
            return MISSING[key](role, window)
    elif value is not None and (since := _DAYS_SINCE_ATTRIBUTE.match(feature)):
        return f"{since['source']} {_days(value)} ago"
    shown = "missing" if value is None else number(value)
    return f"{description or feature}: {shown}"
