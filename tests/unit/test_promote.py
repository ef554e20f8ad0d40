"""The promotion rule: strictly lower log loss on the same cutoff, or no champion."""

from __future__ import annotations

from training.promote import decide


def test_no_champion_promotes() -> None:
    d = decide(0.40, None, None)
    assert d.promote and d.reason == "no champion yet"


def test_lower_log_loss_promotes_with_figures() -> None:
    d = decide(0.30, 0.35, "3")
    assert d.promote and d.champion_version == "3"
    assert "0.300000 beats champion v3 log loss 0.350000" in d.reason


def test_higher_or_equal_log_loss_keeps_the_champion() -> None:
    assert not decide(0.36, 0.35, "3").promote
    tie = decide(0.35, 0.35, "3")
    assert not tie.promote and "does not beat" in tie.reason


def test_incomparable_champion_is_not_replaced() -> None:
    d = decide(0.10, None, "2", comparable=False)
    assert not d.promote and "cannot be scored" in d.reason
