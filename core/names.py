"""The project's vocabulary: the roles an event can play and the targets.

The config speaks these names (`roles:`, `targets:`) as much as the features do,
so they live below both; `features.columns` names them for the data contract.
"""

from __future__ import annotations

# Roles an event type can play. Every type not mapped to one of the first three
# is ACTIVITY.
PURCHASE = "purchase"
SERVICE_REQUEST = "service_request"
CANCEL = "cancel"
ACTIVITY = "activity"
ROLES: tuple[str, ...] = (ACTIVITY, PURCHASE, SERVICE_REQUEST, CANCEL)

# Targets
CHURN = "churn"
# the churn definition read from the subscriptions table
CONTRACT = "contract"
TARGETS: tuple[str, ...] = (CHURN, PURCHASE, SERVICE_REQUEST)
