"""Column names and role names of the data contract, defined once.

Every other module refers to these constants instead of retyping the strings.
"""

from __future__ import annotations

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

# Derived columns
ROLE = "role"
CUTOFF = "cutoff"

# Roles an event type can play. Every type not mapped to one of the first three
# is ACTIVITY.
PURCHASE = "purchase"
SERVICE_REQUEST = "service_request"
CANCEL = "cancel"
ACTIVITY = "activity"
ROLES: tuple[str, ...] = (ACTIVITY, PURCHASE, SERVICE_REQUEST, CANCEL)

# Targets
CHURN = "churn"
TARGETS: tuple[str, ...] = (CHURN, PURCHASE, SERVICE_REQUEST)

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
