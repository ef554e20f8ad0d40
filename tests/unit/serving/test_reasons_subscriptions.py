"""Reason-code phrases for the subscription features."""

from __future__ import annotations

import pytest

from features.definition import FeatureSpec
from features.subscriptions import subscription_features
from serving.reasons import phrase, template_key


@pytest.mark.parametrize(
    ("feature", "value", "words"),
    [
        ("sub_days_to_term_end", 6.0, "term ends in 6 days"),
        ("sub_days_to_term_end", 0.0, "term ends today"),
        ("sub_days_to_term_end", None, "no term end on record (open or none)"),
        ("sub_billing_period_days", 365.0, "annual plan"),
        ("sub_billing_period_days", 91.0, "billed every 91 days"),
        ("sub_renewals_total", 2.0, "2 renewals"),
        ("sub_renewals_total", 1.0, "1 renewal"),
        ("sub_downgrades_90d", 1.0, "1 downgrade in the last 90 days"),
        ("sub_auto_renew", 0.0, "does not renew automatically"),
        ("sub_plan", "pro", "on the pro plan"),
        ("sub_days_since_plan_change", None, "plan never changed"),
        (
            "sub_price_per_activity_30d",
            2.5,
            "pays 2.5 per activity event in the last 30 days",
        ),
    ],
)
def test_phrases(feature: str, value: float | str | None, words: str) -> None:
    assert phrase(feature, value) == words


def test_every_subscription_feature_has_a_template() -> None:
    spec = FeatureSpec(role_of={}, windows_days=(7, 30), subscriptions=True)
    names = [f.name for f in subscription_features(spec)]
    assert names and FeatureSpec(role_of={}).subscriptions is False
    untemplated = [n for n in names if template_key(n) is None and n != "sub_plan"]
    assert untemplated == []
