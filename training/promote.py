"""The promotion rule, and recording its decision in the registry.

A new version always gets the `challenger` alias. It takes `champion` only when it
beats the current champion's log loss on the same validation cutoff (both models
scored on the same rows), or when there is no champion. A tie keeps the champion.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.tracking import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_PREFIX = "promotion."


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    challenger_log_loss: float
    champion_log_loss: float | None = None
    champion_version: str | None = None


def decide(
    challenger_log_loss: float,
    champion_log_loss: float | None,
    champion_version: str | None,
    comparable: bool = True,
) -> Decision:
    """Promote when there is no champion, or on a strictly lower log loss."""
    if champion_version is None:
        return Decision(True, "no champion yet", challenger_log_loss)
    if not comparable or champion_log_loss is None:
        return Decision(
            False,
            f"champion v{champion_version} cannot be scored on this validation data "
            "(its features are not all available); challenger not promoted",
            challenger_log_loss,
            None,
            champion_version,
        )
    if challenger_log_loss < champion_log_loss:
        verb, promote = "beats", True
    else:
        verb, promote = "does not beat", False
    reason = (
        f"challenger log loss {challenger_log_loss:.6f} {verb} champion "
        f"v{champion_version} log loss {champion_log_loss:.6f} "
        "on the same validation cutoff"
    )
    return Decision(
        promote, reason, challenger_log_loss, champion_log_loss, champion_version
    )


def record(
    client: MlflowClient,
    name: str,
    version: str,
    decision: Decision,
    valid_cutoff: datetime,
) -> None:
    """Set the aliases the decision calls for and keep its figures as version tags."""
    tags = {
        "decision": "promoted" if decision.promote else "kept_as_challenger",
        "reason": decision.reason,
        "challenger_log_loss": f"{decision.challenger_log_loss:.10f}",
        "champion_log_loss": (
            ""
            if decision.champion_log_loss is None
            else f"{decision.champion_log_loss:.10f}"
        ),
        "previous_champion_version": decision.champion_version or "",
        "validation_cutoff": valid_cutoff.strftime("%Y-%m-%d"),
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, TAG_PREFIX + key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version)
