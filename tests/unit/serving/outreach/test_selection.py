"""Campaign selection: EV ranking, budget and threshold, a stable keyed control."""

from __future__ import annotations

import numpy as np
import pytest

from serving.outreach.selection import (
    CONTROL,
    TREATMENT,
    control_draw,
    in_control,
    select,
)

KEY = b"k" * 32
IDS = np.array([f"c{i:06d}" for i in range(100_000)])


def control_set(campaign: str, share: float, ids=IDS, key=KEY) -> np.ndarray:
    return np.array([in_control(key, campaign, c, share) for c in ids])


def test_same_campaign_and_customers_same_assignment() -> None:
    p = np.linspace(0.05, 0.95, 500)
    ids = IDS[:500]
    first = select("spring", ids, p, key=KEY, budget=300)
    again = select("spring", ids[::-1], p[::-1], key=KEY, budget=300)
    assert first == again
    assert control_draw(KEY, "spring", "c000001") == control_draw(
        KEY, "spring", "c000001"
    )
    # a customer's group does not depend on who else is in the batch
    alone = select("spring", ids[:10], p[:10], key=KEY, threshold=0.0)
    groups = {r.customer_id: r.group for r in first.rows}
    assert all(groups.get(r.customer_id, r.group) == r.group for r in alone.rows)


@pytest.mark.parametrize("share", [0.05, 0.10, 0.5])
def test_held_out_share_over_100k_ids(share: float) -> None:
    assert control_set("spring", share).mean() == pytest.approx(share, abs=0.01)


def test_campaigns_assign_independently() -> None:
    share = 0.10
    a, b = control_set("spring", share), control_set("autumn", share)
    agreement = (a == b).mean()
    assert agreement == pytest.approx(share**2 + (1 - share) ** 2, abs=0.005)
    # both in control about share**2 of the time (0.01 here, not 0.10)
    assert (a & b).mean() == pytest.approx(share**2, abs=0.002)
    # a different key is a different draw too
    other = control_set("spring", share, key=b"x" * 32)
    assert (a & other).mean() == pytest.approx(share**2, abs=0.002)


def test_ranked_by_expected_value_ties_by_id() -> None:
    ids = ["d", "a", "c", "b"]
    p = np.array([0.5, 0.2, 0.5, 0.9])
    values = np.array([10.0, 100.0, 10.0, 1.0])
    out = select("c1", ids, p, key=KEY, budget=4, values=values, contact_cost=1.0)
    assert [r.customer_id for r in out.rows] == ["a", "c", "d"]
    assert [r.expected_value for r in out.rows] == pytest.approx([19.0, 4.0, 4.0])
    assert [r.rank for r in out.rows] == [1, 2, 3]
    # b: 0.9 * 1 - 1 < 0, never selected although the budget had room
    assert out.dropped_non_positive == 1 and out.selected == 3 and out.eligible == 4
    assert any("dropped" in note for note in out.reasons)


def test_budget_and_threshold_semantics() -> None:
    ids = [f"c{i}" for i in range(10)]
    p = np.arange(10) / 10  # c0 has p = 0: expected value 0 - 0 is not positive
    top = select("c1", ids, p, key=KEY, budget=3, control_share=0.0)
    assert [r.customer_id for r in top.rows] == ["c9", "c8", "c7"]
    assert top.dropped_non_positive == 0 and top.held_out == 0
    everyone = select("c1", ids, p, key=KEY, budget=50, control_share=0.0)
    assert everyone.selected == 9 and everyone.dropped_non_positive == 1
    above = select("c1", ids, p, key=KEY, threshold=0.7, control_share=0.0)
    assert [r.customer_id for r in above.rows] == ["c9", "c8", "c7"]
    costly = select("c1", ids, p, key=KEY, threshold=0.7, contact_cost=0.75)
    assert [r.customer_id for r in costly.rows] == ["c9", "c8"]
    assert costly.dropped_non_positive == 1


def test_control_is_drawn_among_the_selected() -> None:
    out = select("c1", IDS[:2000], np.full(2000, 0.5), key=KEY, budget=2000)
    groups = np.array([r.group for r in out.rows])
    assert set(groups) == {CONTROL, TREATMENT}
    assert out.held_out == (groups == CONTROL).sum()
    assert len(out.treatment) == out.selected - out.held_out
    assert all(
        in_control(KEY, "c1", r.customer_id, 0.10) == (r.group == CONTROL)
        for r in out.rows
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"budget": 5, "threshold": 0.5}, "budget, threshold"),
        ({}, "budget, threshold"),
        ({"budget": 0}, "budget"),
        ({"threshold": 1.5}, "threshold"),
        ({"budget": 5, "contact_cost": -1.0}, "contact_cost"),
        ({"budget": 5, "control_share": 0.6}, "control_share"),
        ({"budget": 5, "control_share": -0.1}, "control_share"),
        ({"budget": 5, "values": np.ones(2)}, "values"),
        ({"budget": 5, "values": -1.0}, "values"),
        ({"budget": 5, "key": b"short"}, "key"),
    ],
)
def test_invalid_inputs_name_the_field(kwargs: dict, field: str) -> None:
    kwargs = {"key": KEY, **kwargs}
    with pytest.raises(ValueError, match=f"^{field}:"):
        select("c1", ["a", "b", "c"], [0.1, 0.2, 0.3], **kwargs)


def test_invalid_customers_name_the_field() -> None:
    with pytest.raises(ValueError, match="^probabilities:"):
        select("c1", ["a", "b"], [0.1], key=KEY, budget=1)
    with pytest.raises(ValueError, match="^probabilities:"):
        select("c1", ["a", "b"], [0.1, np.nan], key=KEY, budget=1)
    with pytest.raises(ValueError, match="^customer_ids:"):
        select("c1", ["a", "a"], [0.1, 0.2], key=KEY, budget=1)
    with pytest.raises(ValueError, match="^campaign_id:"):
        select("", ["a"], [0.1], key=KEY, budget=1)


def test_uplift_ranks_by_expected_incremental_value() -> None:
    ids = np.array(["a", "b", "c", "d"])
    p = np.array([0.9, 0.8, 0.2, 0.1])  # by risk: a, b first
    gain = np.array([-0.05, 0.0, 0.3, 0.1])  # by effect: c, d; a is a sleeping dog
    by_risk = select("s", ids, p, key=KEY, budget=2, values=10.0, contact_cost=0.5)
    by_gain = select(
        "s", ids, p, key=KEY, budget=2, values=10.0, contact_cost=0.5, benefits=gain
    )
    assert by_risk.ranking == "probability"
    assert [r.customer_id for r in by_risk.rows] == ["a", "b"]
    assert all(r.uplift is None for r in by_risk.rows)
    assert by_gain.ranking == "uplift"
    assert [r.customer_id for r in by_gain.rows] == ["c", "d"]
    assert [r.expected_value for r in by_gain.rows] == pytest.approx([2.5, 0.5])
    assert [r.uplift for r in by_gain.rows] == pytest.approx([0.3, 0.1])
    assert any("incremental value" in n for n in by_gain.reasons)
    # a customer contact would not move (or would push away) is never selected
    everyone = select("s", ids, p, key=KEY, threshold=0.0, values=10.0, benefits=gain)
    assert {r.customer_id for r in everyone.rows} == {"c", "d"}


@pytest.mark.parametrize(
    ("gain", "match"), [([0.1], r"benefits: \(1,\) for 2"), ([0.1, 2.0], "-1, 1")]
)
def test_bad_benefits_are_refused(gain, match) -> None:
    with pytest.raises(ValueError, match=match):
        select("s", ["a", "b"], [0.5, 0.5], key=KEY, budget=1, benefits=gain)
