"""The exit codes of `propensity` and of the nightly run, in one place.

Schedulers branch on these numbers (a drift alert is not a failure: the scores
are written), so they never change; a new code takes a new number. Each member
carries a one-line docstring (`ExitCode.DRIFT_ALERT.__doc__`); `describe()`
lists them all, for the README's table.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """How a `propensity` command (and the nightly run's status file) ended."""

    def __new__(cls, value: int, doc: str) -> ExitCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.__doc__ = doc
        return member

    OK = 0, "Done (scoring: published, no drift or outcome alert; warnings allowed)."
    FAILED = 1, "An error (on stderr), a busy output or a refusal: nothing published."
    USAGE = 2, "Bad input before any work: an argument, the config, the data contract."
    DRIFT_ALERT = 3, "Drift alert: scores written, the alerts named on stderr."
    SINK_FAILED = 4, "Postgres sink failed: the Parquet scores are published."
    RUNNING = 5, "`score status`: the last scoring run is still running."
    NO_RUN = 6, "`score status`: no scoring run is recorded."
    TARGET_SKIPPED = (
        7,
        (
            "`train`: a listed target could not be trained (counts on stderr), "
            "the others were."
        ),
    )
    OUTCOME_ALERT = 8, "Outcome alert: matured scores missed their AUC or ECE bar."
    SCORED_TOO_FEW = (
        9,
        (
            "Scored no one, or far fewer than the last good run: Parquet published "
            "for a look, online store and sink left as they were."
        ),
    )
    STORE_FAILED = (
        10,
        (
            "Online store not updated (unreachable or failed): the Parquet scores "
            "are published, the previous store serves."
        ),
    )

    TRACKING_FAILED = (
        11,
        (
            "MLflow run not recorded (tracking server unreachable or failing): the "
            "Parquet scores, online store and sink are published."
        ),
    )


def describe() -> dict[ExitCode, str]:
    """Every exit code with its one-line meaning, in number order."""
    return {code: str(code.__doc__) for code in sorted(ExitCode)}
