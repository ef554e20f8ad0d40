"""A campaign's readout: did contacting customers change their outcome?

For one confirmed campaign of the contact log (serving.outreach.contact_log):

1. Its selected customers (treatment and control), each with the score they
   were selected on; deciles of that score (1 = the highest tenth, ties by
   stored id) over treatment and control together.
2. Each customer's outcome in [confirmed_at, confirmed_at + horizon): by the
   campaign target's own label definition (features.labels.build_labels, the
   role mapping and horizon of the config, so a readout counts exactly what the
   model was trained to predict), or, when event types are given, "one event of
   these types in the window" (Hillstrom's visits); and their revenue, the sum of
   purchase-role amounts in the same window. Computed by DuckDB over the
   dataset's views: only the per-group sums come back.
3. Per group: customers, outcome rate, revenue per customer; treatment minus
   control with intervals and p-values (serving.outreach.stats), incremental
   outcomes and revenue (lift x treated), cost (contact cost x treated) and ROI
   ((incremental revenue - cost) / cost); per decile the control's rate beside
   the decile's mean score (calibration in the wild) and the lift; the
   sample-ratio check against the control share the campaign was selected with.
4. Before the window has passed (by `as_of`: the config's data.as_of, else now)
   the readout is immature and says how many days remain; its figures are those
   of the part of the window observed so far.

The stored ids of the contact log are those of the dataset's views (pseudonyms
when pseudonymisation is on), so the join needs no id mapping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from datetime import UTC, datetime, timedelta

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from core.config import ProjectConfig
from features.columns import (
    AMOUNT,
    CHURN,
    CONTRACT,
    CUSTOMER_ID,
    CUTOFF,
    EVENT_TIME,
    EVENT_TYPE,
    PURCHASE,
    ROLE,
)
from features.definition import FeatureSpec, with_roles
from features.labels import LabelSpec, build_labels
from features.sources.load import Dataset
from serving.outreach import stats
from serving.outreach.contact_log import CampaignInfo, open_contact_log
from serving.outreach.selection import CONTROL, TREATMENT

GROUP, DECILE, SCORE = "contact_group", "decile", "score"
OUTCOME, REVENUE = "outcome", "revenue"
DECILES = 10


class ReadoutError(ValueError):
    """The campaign cannot be read out (unknown id, unknown target)."""


@dataclass(frozen=True)
class OutcomeDefinition:
    """What counts as the outcome: the target's label over `horizon_days`, or
    with `event_types` one event of those types in the window."""

    target: str
    horizon_days: int
    event_types: tuple[str, ...] = ()
    churn_definition: str | None = None
    grace_days: int = 0

    @property
    def days_to_mature(self) -> int:
        """Days after confirmation until the outcome is known (contract churn
        waits for the grace period after the window too)."""
        if not self.event_types and self.churn_definition == CONTRACT:
            return self.horizon_days + self.grace_days
        return self.horizon_days

    def describe(self) -> str:
        window = f"in the {self.horizon_days} days from confirmation"
        if self.event_types:
            return f"an event of type {', '.join(self.event_types)} {window}"
        if self.target == CHURN:
            return f"churn ({self.churn_definition}) {window}"
        return f"a {self.target} event {window}"


def outcome_definition(
    config: ProjectConfig,
    target: str,
    event_types: Sequence[str] = (),
    horizon_days: int | None = None,
) -> OutcomeDefinition:
    """The outcome of a campaign on `target` as the config defines it; event
    types and a horizon given override the target's."""
    try:
        horizon = config.targets.horizon(target)
    except AttributeError as exc:
        raise ReadoutError(f"target {target!r} is not in the config's targets") from exc
    churn = config.targets.churn
    return OutcomeDefinition(
        target=target,
        horizon_days=horizon_days or horizon,
        event_types=tuple(event_types),
        churn_definition=churn.definition if target == CHURN else None,
        grace_days=churn.grace_days if target == CHURN else 0,
    )


def parse_stamp(text: str) -> datetime:
    """A contact log time as a naive UTC datetime (the views' convention)."""
    at = datetime.fromisoformat(text)
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def selected_table(rows: Sequence[tuple[str, str, float | None]]) -> pa.Table:
    """The campaign's (customer_id, group, score at selection) as Arrow (a
    column at a time: `zip(*rows)` takes seconds for a million rows)."""
    ids, groups, scores = ([r[k] for r in rows] for k in range(3))
    return pa.table(
        {
            CUSTOMER_ID: pa.array(ids, pa.string()),
            GROUP: pa.array(groups, pa.string()),
            SCORE: pa.array(scores, pa.float64()),
        }
    )


def with_deciles(selected: ir.Table) -> ir.Table:
    """`selected` with the decile of the score at selection: 1 + floor(10 * r / n)
    for the r-th highest score (from 0, ties by id) of the n scored customers,
    treatment and control together (1 = the highest tenth); null unscored."""
    scored = selected[SCORE].notnull()
    rank = ibis.row_number().over(
        ibis.window(order_by=[selected[SCORE].desc(), selected[CUSTOMER_ID]])
    )
    n = selected[SCORE].count().over(ibis.window())
    decile = ibis.ifelse(scored, 1 + (DECILES * rank) // n, ibis.null("int64"))
    return selected.mutate(**{DECILE: decile.cast("int64")})


def customer_outcomes(
    ds: Dataset,
    selected: ir.Table,
    start: datetime,
    outcome: OutcomeDefinition,
    spec: FeatureSpec,
    labels: LabelSpec,
) -> ir.Table:
    """Per selected customer: group, score, decile, outcome (0/1) and revenue in
    [start, start + horizon). An expression: DuckDB computes it."""
    end = start + timedelta(days=outcome.horizon_days)
    ev = ds.events
    ev = ev.filter(ev[EVENT_TIME] >= start, ev[EVENT_TIME] < end)
    ids = selected.select(_sid=selected[CUSTOMER_ID])
    ev = ev.semi_join(ids, ev[CUSTOMER_ID] == ids._sid)
    if outcome.event_types:
        hits = ev.filter(ev[EVENT_TYPE].isin(list(outcome.event_types)))
        found = hits.group_by(CUSTOMER_ID).aggregate(_n=hits[EVENT_TIME].count())
        found = found.select(_oid=found[CUSTOMER_ID], _o=(found._n > 0).cast("int8"))
    else:
        pairs = selected.select(CUSTOMER_ID, **{CUTOFF: ibis.literal(start)})
        # every target's horizon set to this one: the label join spans no more
        window = LabelSpec(
            {t: outcome.horizon_days for t in labels.horizons},
            labels.churn_definition,
            labels.grace_days,
        )
        built = build_labels(ev, pairs, spec, window, ds.subscriptions)
        found = built.select(_oid=built[CUSTOMER_ID], _o=built[outcome.target])
    bought = with_roles(ev, spec)
    bought = bought.filter(bought[ROLE] == PURCHASE)
    revenue = bought.group_by(CUSTOMER_ID).aggregate(_r=bought[AMOUNT].sum())
    revenue = revenue.select(_rid=revenue[CUSTOMER_ID], _r=revenue._r)
    out = selected.left_join(found, selected[CUSTOMER_ID] == found._oid)
    out = out.left_join(revenue, out[CUSTOMER_ID] == revenue._rid)
    return out.select(
        CUSTOMER_ID,
        GROUP,
        SCORE,
        DECILE,
        **{
            OUTCOME: out._o.fill_null(0).cast("int64"),
            REVENUE: out._r.fill_null(0.0).cast("float64"),
        },
    )


def group_sums(outcomes: ir.Table) -> list[dict]:
    """Per (group, decile): customers, outcomes, revenue, its sum of squares and
    the mean score; a few dozen rows."""
    sums = outcomes.group_by([GROUP, DECILE]).aggregate(
        n=outcomes[CUSTOMER_ID].count(),
        outcomes=outcomes[OUTCOME].sum(),
        revenue=outcomes[REVENUE].sum(),
        squares=(outcomes[REVENUE] * outcomes[REVENUE]).sum(),
        score_sum=outcomes[SCORE].sum(),
        scored=outcomes[SCORE].count(),
    )
    return sums.to_pyarrow().to_pylist()


@dataclass(frozen=True)
class _Group:
    n: int = 0
    outcomes: int = 0
    revenue: float = 0.0
    squares: float = 0.0
    score_sum: float = 0.0
    scored: int = 0

    def __add__(self, other: _Group) -> _Group:
        mine, theirs = astuple(self), astuple(other)
        return _Group(*(a + b for a, b in zip(mine, theirs, strict=True)))

    @property
    def moments(self) -> stats.Moments:
        return stats.Moments(self.n, self.revenue, self.squares)


def _grouped(rows: list[dict]) -> dict[tuple[str, int | None], _Group]:
    return {
        (r[GROUP], r[DECILE]): _Group(
            int(r["n"]),
            int(r["outcomes"] or 0),
            float(r["revenue"] or 0),
            float(r["squares"] or 0),
            float(r["score_sum"] or 0),
            int(r["scored"] or 0),
        )
        for r in rows
    }


def _total(groups: dict[tuple[str, int | None], _Group], group: str) -> _Group:
    total = _Group()
    for (g, _), sums in groups.items():
        if g == group:
            total = total + sums
    return total


def _group_figures(g: _Group) -> dict:
    rate = stats.wilson(g.outcomes, g.n)
    per_customer = stats.mean_interval(g.moments)
    return {
        "customers": g.n,
        "outcomes": g.outcomes,
        "rate": rate.as_dict(),
        "revenue": g.revenue,
        "revenue_per_customer": per_customer.as_dict(),
    }


def _scaled(e: stats.Estimate, by: int) -> dict:
    def times(x: float | None) -> float | None:
        return None if x is None else x * by

    return {
        "value": times(e.value),
        "low": times(e.low),
        "high": times(e.high),
        "method": f"lift x {by:,} treated ({e.method})",
    }


def compare(
    groups: dict[tuple[str, int | None], _Group],
    control_share: float,
    contact_cost: float,
) -> dict:
    """Per group figures, the lifts, incremental outcomes and revenue, cost,
    ROI, deciles and the sample-ratio check, from the per (group, decile) sums."""
    t, c = _total(groups, TREATMENT), _total(groups, CONTROL)
    absolute = stats.newcombe(t.outcomes, t.n, c.outcomes, c.n)
    p_outcome, test = stats.proportions_test(t.outcomes, t.n, c.outcomes, c.n)
    revenue_lift, p_revenue = stats.welch(t.moments, c.moments)
    cost = contact_cost * t.n
    incremental_revenue = _scaled(revenue_lift, t.n)
    gain = incremental_revenue["value"]
    return {
        "groups": {TREATMENT: _group_figures(t), CONTROL: _group_figures(c)},
        "lift": {
            OUTCOME: {
                "absolute": absolute.as_dict(),
                "relative": stats.risk_ratio_lift(
                    t.outcomes, t.n, c.outcomes, c.n
                ).as_dict(),
                "p_value": p_outcome,
                "test": test,
            },
            REVENUE: {
                "absolute": revenue_lift.as_dict(),
                "relative": stats.ratio_of_means_lift(t.moments, c.moments).as_dict(),
                "p_value": p_revenue,
                "test": stats.WELCH,
            },
        },
        "incremental": {
            "outcomes": _scaled(absolute, t.n),
            REVENUE: incremental_revenue,
        },
        "cost": {"contact_cost": contact_cost, "treated": t.n, "total": cost},
        "roi": None if cost <= 0 or gain is None else (gain - cost) / cost,
        "deciles": _deciles(groups),
        "sample_ratio": stats.sample_ratio(c.n, t.n, control_share).as_dict(),
    }


def _deciles(groups: dict[tuple[str, int | None], _Group]) -> list[dict]:
    out = []
    for d in sorted({d for _, d in groups if d is not None}):
        t = groups.get((TREATMENT, d), _Group())
        c = groups.get((CONTROL, d), _Group())
        both = t + c
        out.append(
            {
                DECILE: d,
                "treatment_customers": t.n,
                "control_customers": c.n,
                "mean_score": both.score_sum / both.scored if both.scored else None,
                "control_rate": stats.wilson(c.outcomes, c.n).as_dict(),
                "treatment_rate": stats.wilson(t.outcomes, t.n).as_dict(),
                "lift": stats.newcombe(t.outcomes, t.n, c.outcomes, c.n).as_dict(),
            }
        )
    return out


def readout(
    config: ProjectConfig,
    ds: Dataset,
    campaign_id: str,
    *,
    event_types: Sequence[str] = (),
    horizon_days: int | None = None,
    as_of: datetime | None = None,
) -> dict:
    """The readout of `campaign_id` as a JSON-ready dict (see the module
    docstring); ReadoutError when the contact log does not hold it."""
    log = open_contact_log(config.outreach.contact_log)
    campaign = log.campaign(campaign_id)
    if campaign is None:
        known = [c.campaign_id for c in log.campaigns()]
        raise ReadoutError(
            f"campaign {campaign_id!r} is not in the contact log "
            f"{config.outreach.contact_log} (confirmed campaigns: "
            f"{', '.join(known[-10:]) or 'none'})"
        )
    outcome = outcome_definition(config, campaign.target, event_types, horizon_days)
    start = parse_stamp(campaign.confirmed_at)
    selected = with_deciles(ibis.memtable(selected_table(log.selected(campaign_id))))
    per_customer = customer_outcomes(
        ds,
        selected,
        start,
        outcome,
        FeatureSpec.from_config(config),
        LabelSpec.from_config(config),
    )
    groups = _grouped(group_sums(per_customer))
    share, cost, notes = _settings(config, campaign)
    figures = compare(groups, share, cost)
    return {
        "campaign_id": campaign_id,
        "target": campaign.target,
        "outcome": {
            "definition": outcome.describe(),
            "event_types": list(outcome.event_types) or None,
            "horizon_days": outcome.horizon_days,
        },
        **_maturity(start, outcome, as_of or default_as_of(config)),
        "control_share": share,
        **figures,
        "notes": notes + _notes(figures, campaign.target),
        "level": stats.LEVEL,
    }


def default_as_of(config: ProjectConfig) -> datetime:
    """When maturity is judged by default: data.as_of, else now (naive UTC)."""
    as_of = config.data.as_of
    if as_of is None:
        return datetime.now(UTC).replace(tzinfo=None)
    return as_of.astimezone(UTC).replace(tzinfo=None) if as_of.tzinfo else as_of


def _maturity(start: datetime, outcome: OutcomeDefinition, as_of: datetime) -> dict:
    end = start + timedelta(days=outcome.horizon_days)
    known = start + timedelta(days=outcome.days_to_mature)
    remaining = (known - as_of).total_seconds() / 86_400
    return {
        "confirmed_at": start.isoformat(),
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "as_of": as_of.isoformat(),
        "mature": remaining <= 0,
        "days_remaining": max(0, math.ceil(remaining)),
    }


def _settings(
    config: ProjectConfig, campaign: CampaignInfo
) -> tuple[float, float, list[str]]:
    """The control share and contact cost the campaign was selected with; the
    config's when the log predates keeping them (and a note saying so)."""
    notes = []
    share, cost = campaign.control_share, campaign.contact_cost
    if share is None:
        share = config.outreach.control_share
        notes.append(
            "the contact log does not record this campaign's control share: "
            f"checked against outreach.control_share ({share:g})"
        )
    if cost is None:
        cost = config.outreach.contact_cost
        notes.append(
            "the contact log does not record this campaign's contact cost: "
            f"outreach.contact_cost ({cost:g}) used"
        )
    return share, cost, notes


def _notes(figures: dict, target: str) -> list[str]:
    notes = []
    srm = figures["sample_ratio"]
    if srm["mismatch"]:
        notes.append(
            f"SAMPLE-RATIO MISMATCH: control share {srm['observed_control_share']:.4f}"
            f" against {srm['expected_control_share']:g} expected (p = "
            f"{_p(srm['p_value'])}): the split is not what was drawn; do not trust "
            "the lifts before finding why"
        )
    if figures["groups"][CONTROL]["customers"] == 0:
        notes.append("no control group: no lift can be measured")
    if target == CHURN:
        notes.append("churn: a negative lift is customers retained by the campaign")
    if not figures["deciles"]:
        notes.append("no scores at selection recorded: no deciles")
    if figures["roi"] is None:
        notes.append("ROI undefined: no contact cost")
    return notes


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2g}"


def with_truth(report: dict, truth: pa.Table) -> dict:
    """`report` with the true effect beside the measured one, from a table of
    each selected customer's potential outcomes (the demo's
    campaign_truth.parquet: `outcome_effect`, `revenue_untreated`,
    `revenue_treated`; features.synthetic.campaign): their mean over the
    campaign's customers is the effect the difference in means estimates, and
    whether each 95% interval covers it. Only meaningful for the outcome the
    truth counts (the target's label over the same horizon)."""
    missing = {"outcome_effect", "revenue_untreated", "revenue_treated"} - set(
        truth.column_names
    )
    if missing:
        raise ReadoutError(f"the truth table has no column(s) {sorted(missing)}")
    if "campaign_id" in truth.column_names:
        mine = pc.equal(truth["campaign_id"], report["campaign_id"])
        truth = truth.filter(mine)
    if truth.num_rows == 0:
        raise ReadoutError(f"the truth table holds no row of {report['campaign_id']}")
    n = truth.num_rows
    effect = pc.sum(truth["outcome_effect"]).as_py() / n
    revenue = (
        pc.sum(truth["revenue_treated"]).as_py()
        - pc.sum(truth["revenue_untreated"]).as_py()
    ) / n
    lift = report["lift"]

    def covers(estimate: dict, value: float) -> bool | None:
        if estimate["low"] is None or estimate["high"] is None:
            return None
        return bool(estimate["low"] <= value <= estimate["high"])

    return {
        **report,
        "truth": {
            "customers": n,
            "outcome_effect": effect,
            "outcome_covered": covers(lift[OUTCOME]["absolute"], effect),
            "revenue_effect": revenue,
            "revenue_covered": covers(lift[REVENUE]["absolute"], revenue),
        },
    }
