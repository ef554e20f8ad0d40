"""Column names and role names of the data contract, defined once.

Every other module refers to these constants instead of retyping the strings.
"""

from __future__ import annotations

# the roles and targets are named once, in core (the config uses them too)
from core.names import (  # noqa: F401
    ACTIVITY,
    CANCEL,
    CHURN,
    CONTRACT,
    PURCHASE,
    ROLES,
    SERVICE_REQUEST,
    TARGETS,
)

# Events (required table)
CUSTOMER_ID = "customer_id"
EVENT_TIME = "event_time"
EVENT_TYPE = "event_type"
AMOUNT = "amount"
QUANTITY = "quantity"

EVENT_COLUMNS: tuple[str, ...] = (CUSTOMER_ID, EVENT_TIME, EVENT_TYPE, AMOUNT, QUANTITY)
REQUIRED_EVENT_COLUMNS: tuple[str, ...] = (CUSTOMER_ID, EVENT_TIME, EVENT_TYPE)
OPTIONAL_EVENT_COLUMNS: tuple[str, ...] = (AMOUNT, QUANTITY)

# Customers (optional table): customer_id plus static attributes.
SIGNUP_TIME = "signup_time"

# Subscriptions (optional table): one row per term, in force over
# [start_time, end_time); end_time is null while the term is open-ended.
PLAN = "plan"
START_TIME = "start_time"
END_TIME = "end_time"
PRICE = "price"
MRR = "mrr"  # accepted instead of price
BILLING_PERIOD_DAYS = "billing_period_days"
BILLING_PERIOD_MONTHS = "billing_period_months"  # accepted instead of days
DISCOUNT = "discount"
AUTO_RENEW = "auto_renew"
REQUIRED_SUBSCRIPTION_COLUMNS: tuple[str, ...] = (
    CUSTOMER_ID,
    PLAN,
    START_TIME,
    END_TIME,
)
# each pair: the contract's name first, then the name accepted instead
PRICE_COLUMNS: tuple[str, ...] = (PRICE, MRR)
BILLING_PERIOD_COLUMNS: tuple[str, ...] = (BILLING_PERIOD_DAYS, BILLING_PERIOD_MONTHS)
OPTIONAL_SUBSCRIPTION_NUMBERS: tuple[str, ...] = (DISCOUNT, QUANTITY)
SUBSCRIPTION_COLUMNS: tuple[str, ...] = (
    *REQUIRED_SUBSCRIPTION_COLUMNS,
    PRICE,
    BILLING_PERIOD_DAYS,
    DISCOUNT,
    AUTO_RENEW,
    QUANTITY,
)

# Derived columns
ROLE = "role"
CUTOFF = "cutoff"

# Score outputs
AS_OF = "as_of"
SCORED_AT = "scored_at"
RUN_ID = "run_id"
FEATURE_SET_VERSION = "feature_set_version"


# Per-target score columns: the probability is the target's own name.
def decile_column(target: str) -> str:
    return f"{target}_decile"


def model_column(target: str) -> str:
    return f"{target}_model"


def version_column(target: str) -> str:
    return f"{target}_model_version"


def reasons_column(target: str) -> str:
    return f"{target}_reasons"


# Per-target population flags of the feature and training tables (not features):
# the (customer, cutoff) rows a target is trained, tested and scored on.
def population_column(target: str) -> str:
    return f"in_{target}"
