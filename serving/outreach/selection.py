"""Campaign selection: whom to contact, ranked by expected value, with a control.

For a campaign over scored customers:

1. Expected value per customer = p * value - contact_cost, where p is the served
   (calibrated) probability of the campaign's target and value what a conversion
   is worth (per customer, or one default). When the target has an uplift
   champion (model.uplift), the expected *incremental* value instead:
   benefit * value - contact_cost, with benefit the change contact makes in
   the wanted direction (p_treated - p_control; its negative for churn), so a
   customer the campaign would not move, or would push away, ranks last.
2. Customers are ranked by expected value, highest first; equal values by customer
   id (as text), so the ranking is deterministic.
3. The budget rule picks the top `budget` customers, or the threshold rule picks
   every customer with p >= `threshold` (exactly one of the two). Customers with a
   non-positive expected value are never selected, whatever the rule: contacting
   them loses money on average. `dropped_non_positive` counts those the rule
   alone would have picked.
4. Among the selected, a held-out control group (not to be contacted) is drawn by
   a keyed hash: HMAC-SHA256(key, f"{campaign_id}\\x1f{customer_id}"), its first 8
   bytes as a big-endian uint64 / 2**64, below `control_share` -> control. The
   draw is stable (the same campaign and customer always land in the same group,
   on any machine, in any batch), independent across campaign ids, and not
   guessable or steerable without the key. The budget counts the control, so
   about budget * (1 - control_share) customers are contacted.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.config import MIN_KEY_BYTES

TREATMENT = "treatment"
CONTROL = "control"
SEPARATOR = "\x1f"
MAX_CONTROL_SHARE = 0.5
PROBABILITY, UPLIFT = "probability", "uplift"


@dataclass(frozen=True)
class Selected:
    """One selected customer, in rank order."""

    customer_id: str
    probability: float
    expected_value: float
    # the uplift model's benefit per contact; None when ranked by probability
    uplift: float | None
    # 1 = highest expected value, over treatment and control together
    rank: int
    group: str


@dataclass(frozen=True)
class Selection:
    campaign_id: str
    rows: list[Selected]
    # customers offered to the campaign
    eligible: int
    # picked by the rule with a positive expected value (treatment + control)
    selected: int
    # of the selected, in the control group: not to be contacted
    held_out: int
    # picked by the rule alone but with expected value <= 0, so not selected
    dropped_non_positive: int
    # plain-language notes on why customers were or were not selected
    reasons: list[str] = field(default_factory=list)
    # what expected_value was computed from: "uplift" or "probability"
    ranking: str = PROBABILITY

    @property
    def treatment(self) -> list[Selected]:
        return [r for r in self.rows if r.group == TREATMENT]


def control_draw(key: bytes, campaign_id: str, customer_id: str) -> float:
    """A uniform number in [0, 1) fixed by the key, campaign and customer."""
    message = f"{campaign_id}{SEPARATOR}{customer_id}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_control(key: bytes, campaign_id: str, customer_id: str, share: float) -> bool:
    return control_draw(key, campaign_id, customer_id) < share


def select(
    campaign_id: str,
    customer_ids: Sequence[str] | np.ndarray,
    probabilities: Sequence[float] | np.ndarray,
    *,
    key: bytes,
    budget: int | None = None,
    threshold: float | None = None,
    values: float | Sequence[float] | np.ndarray = 1.0,
    contact_cost: float = 0.0,
    control_share: float = 0.10,
    benefits: Sequence[float] | np.ndarray | None = None,
) -> Selection:
    """Rank, select and split one campaign's customers (see the module docstring);
    with `benefits` (the uplift champion's, one per customer) by expected
    incremental value.

    Raises ValueError naming the offending field for invalid input."""
    ids, p, value = _checked(
        campaign_id,
        customer_ids,
        probabilities,
        key,
        budget,
        threshold,
        values,
        contact_cost,
        control_share,
    )
    gain = None if benefits is None else _benefits(benefits, len(ids))
    ev = (p if gain is None else gain) * value - contact_cost
    order = np.lexsort((ids, -ev))
    positive = ev[order] > 0
    if budget is not None:
        by_rule = np.arange(len(order)) < budget
        rule = f"budget of {budget}"
    else:
        by_rule = p[order] >= threshold
        rule = f"threshold p >= {threshold:g}"
    chosen = order[by_rule & positive]
    dropped = int((by_rule & ~positive).sum())
    rows = [
        Selected(
            customer_id=str(ids[i]),
            probability=float(p[i]),
            expected_value=float(ev[i]),
            uplift=None if gain is None else float(gain[i]),
            rank=rank,
            group=CONTROL
            if in_control(key, campaign_id, str(ids[i]), control_share)
            else TREATMENT,
        )
        for rank, i in enumerate(chosen, start=1)
    ]
    held_out = sum(r.group == CONTROL for r in rows)
    return Selection(
        campaign_id,
        rows,
        eligible=len(ids),
        selected=len(rows),
        held_out=held_out,
        dropped_non_positive=dropped,
        reasons=_notes(len(ids), len(rows), held_out, dropped, rule, control_share)
        + ([] if gain is None else [UPLIFT_NOTE]),
        ranking=PROBABILITY if gain is None else UPLIFT,
    )


UPLIFT_NOTE = (
    "ranked by expected incremental value (uplift x value - contact_cost): the "
    "target's uplift champion estimates what contact changes for each customer"
)


def _benefits(benefits: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    gain = np.asarray(benefits, dtype=np.float64)
    if gain.shape != (n,):
        raise ValueError(f"benefits: {gain.shape} for {n} customer_ids")
    if not np.all(np.isfinite(gain)) or np.any(np.abs(gain) > 1):
        raise ValueError("benefits: must lie in [-1, 1] (no NaN)")
    return gain


def _notes(
    eligible: int, selected: int, held_out: int, dropped: int, rule: str, share: float
) -> list[str]:
    notes = [f"{selected} of {eligible} eligible customers selected by the {rule}"]
    if dropped:
        notes.append(
            f"{dropped} customer(s) picked by the {rule} were dropped: expected "
            "value not positive"
        )
    notes.append(
        f"{held_out} of the selected held out as control (share {share:g}): "
        "do not contact"
    )
    return notes


def _checked(
    campaign_id: str,
    customer_ids: Sequence[str] | np.ndarray,
    probabilities: Sequence[float] | np.ndarray,
    key: bytes,
    budget: int | None,
    threshold: float | None,
    values: float | Sequence[float] | np.ndarray,
    contact_cost: float,
    control_share: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | float]:
    """Validated inputs as arrays; every error names its field."""
    if not isinstance(campaign_id, str) or not campaign_id or SEPARATOR in campaign_id:
        raise ValueError("campaign_id: a non-empty string without \\x1f")
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"key: at least {MIN_KEY_BYTES} bytes")
    if (budget is None) == (threshold is None):
        raise ValueError("budget, threshold: give exactly one")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int) or budget < 1
    ):
        raise ValueError(f"budget: a whole number >= 1, got {budget!r}")
    if threshold is not None and not 0 <= threshold <= 1:
        raise ValueError(f"threshold: must lie in [0, 1], got {threshold!r}")
    if not math.isfinite(contact_cost) or contact_cost < 0:
        raise ValueError(f"contact_cost: must be finite and >= 0, got {contact_cost}")
    if not 0 <= control_share <= MAX_CONTROL_SHARE:
        raise ValueError(
            f"control_share: must lie in [0, {MAX_CONTROL_SHARE}], got {control_share}"
        )
    ids = np.asarray(customer_ids).astype(str)
    p = np.asarray(probabilities, dtype=np.float64)
    if ids.ndim != 1 or p.ndim != 1:
        raise ValueError("customer_ids, probabilities: one-dimensional")
    if len(p) != len(ids):
        raise ValueError(f"probabilities: {len(p)} values for {len(ids)} customer_ids")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("customer_ids: duplicates")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("probabilities: must lie in [0, 1] (no NaN)")
    value = np.asarray(values, dtype=np.float64)
    if value.ndim == 1 and len(value) != len(ids):
        raise ValueError(f"values: {len(value)} values for {len(ids)} customer_ids")
    if value.ndim > 1 or not np.all(np.isfinite(value) & (value >= 0)):
        raise ValueError("values: one number or one per customer, finite and >= 0")
    return ids, p, value if value.ndim == 1 else float(value)
