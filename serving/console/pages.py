"""What each console page shows: a context for its template, from the sources.

Pure reading and arranging; serving.console.app wires them to routes and
checks the session first. Each chart comes with the rows of its data table.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from serving.console import charts
from serving.outreach import readout_report
from serving.outreach.readout import default_as_of, outcome_definition, parse_stamp

if TYPE_CHECKING:
    from starlette.requests import Request

    from serving.console.app import Console
    from serving.console.session import Session

log = logging.getLogger(__name__)

# the backtest figures the Models page lists, in order (means over the origins)
MODEL_FIGURES = (
    ("backtest_roc_auc_mean", "AUC (backtest mean)"),
    ("backtest_log_loss_mean", "log loss (backtest mean)"),
    ("calibrated_log_loss_mean", "log loss, calibrated"),
    ("calibrated_ece_mean", "ECE, calibrated"),
    ("backtest_lift_top_decile_mean", "top-decile lift"),
    ("backtest_positive_rate_mean", "positive rate"),
)
MAX_ID = 200
# the Models page shows the realised figures of the latest matured dates (the
# whole series is in MLflow's outcomes experiment)
REALISED_DATES = 90


def alerts(status: dict | None, agg: dict | None) -> list[tuple[str, str]]:
    """The alerts in force: (kind, what), from the last run's status."""
    if status is None:
        return [("no run", "no nightly run is recorded yet: run `propensity score`")]
    out: list[tuple[str, str]] = []
    if status.get("state") in ("failed", "interrupted"):
        out.append(("run " + status["state"], str(status.get("error") or "")))
    if status.get("scored_too_few"):
        out.append(("too few scored", status["scored_too_few"].get("message", "")))
    if status.get("online_store_error"):
        out.append(("online store not updated", status["online_store_error"]))
    if status.get("postgres_error"):
        out.append(("Postgres sink failed", status["postgres_error"]))
    for name in status.get("drift_alerts") or []:
        out.append(("drift alert", name))
    for text in status.get("outcome_alerts") or []:
        out.append(("outcome alert", text))
    if status.get("outcomes_error"):
        out.append(("outcome check failed", status["outcomes_error"]))
    return out


async def overview(console: Console, request: Request, who: Session) -> dict:
    status = console.sources.last_run()
    agg = console.sources.aggregates() or {}
    hist = agg.get("histograms") or {}
    edges = hist.get("edges") or []
    distributions = []
    for target, counts in (hist.get("counts") or {}).items():
        distributions.append(
            {
                "target": target,
                "customers": sum(counts),
                "mean": (agg.get("quantiles") or {}).get(f"score_{target}_mean"),
                "svg": charts.histogram(
                    f"hist-{target}",
                    f"Scores of {target}: customers per probability bin",
                    edges,
                    counts,
                ),
                "rows": [(edges[i], edges[i + 1], n) for i, n in enumerate(counts)],
            }
        )
    drift = agg.get("drift")
    drift_svg = None
    if drift and drift.get("features"):
        thresholds = drift.get("thresholds") or {}
        drift_svg = charts.bars(
            "drift-features",
            "Most drifted features by PSI",
            [(f["feature"], f["psi"] or 0.0) for f in drift["features"]],
            marks=[
                (v, f"{k} {v:g}")
                for k, v in thresholds.items()
                if isinstance(v, int | float)
            ],
        )
    return {
        "title": "Overview",
        "active": "/overview",
        "status": status,
        "alerts": alerts(status, agg),
        "aggregates_as_of": agg.get("as_of"),
        "distributions": distributions,
        "drift": drift,
        "drift_svg": drift_svg,
    }


async def models(console: Console, request: Request, who: Session) -> dict:
    agg = console.sources.aggregates() or {}
    outcomes = agg.get("outcomes") or {}
    out = []
    for target, m in (agg.get("models") or {}).items():
        metrics = m.get("metrics") or {}
        curve = m.get("calibration_curve") or {}
        every = outcomes.get(target) or []
        series = every[-REALISED_DATES:]
        realised_svg = None
        if series:
            realised_svg = charts.lines(
                f"realised-{target}",
                f"Realised AUC of {target} by score date, beside the backtest's",
                [str(s.get("as_of")) for s in series],
                [
                    ("realised AUC", [s.get("roc_auc") for s in series]),
                    ("backtest AUC", [s.get("expected_roc_auc") for s in series]),
                ],
            )
        out.append(
            {
                "target": target,
                "model": m,
                "figures": [
                    (label, metrics.get(key))
                    for key, label in MODEL_FIGURES
                    if metrics.get(key) is not None
                ],
                "calibration_svg": charts.curve(
                    f"calibration-{target}",
                    f"Calibration map of {target}: served probability against the "
                    "raw model score",
                    curve.get("raw") or [],
                    curve.get("served") or [],
                )
                if curve.get("raw")
                else None,
                "calibration_rows": list(
                    zip(curve.get("raw") or [], curve.get("served") or [], strict=True)
                )[:: max(1, len(curve.get("raw") or []) // 10)],
                "realised": series,
                "realised_total": len(every),
                "realised_svg": realised_svg,
                "promotions": list(reversed(m.get("promotions") or [])),
            }
        )
    return {
        "title": "Models",
        "active": "/models",
        "models": out,
        "as_of": agg.get("as_of"),
        "outcome_check": console.sources.outcome_check(),
    }


def _customer_id(form) -> tuple[str, str | None]:  # noqa: ANN001 - a FormData
    """The form's customer id, and what is wrong with it (None: nothing)."""
    query = str(form.get("customer_id", "")).strip()
    if not query or len(query) > MAX_ID:
        return query, f"Enter a customer id (1 to {MAX_ID} characters)."
    return query, None


async def customer(console: Console, request: Request, who: Session) -> dict:
    context = {
        "title": "Customer",
        "active": "/customer",
        "view": None,
        "error": None,
        "query": "",
    }
    if request.method != "POST":
        return context
    query, context["error"] = _customer_id(request.state.form)
    context["query"] = query
    if context["error"]:
        context["http_status"] = 400
        return context
    from serving.online_store import StoreError

    try:
        context["view"] = console.sources.customer(query)
    except StoreError as exc:
        context["error"] = f"The online store cannot be read: {exc}"
        context["http_status"] = 503
    return context


def _campaign_rows(console: Console) -> list[dict]:
    agg = console.sources.aggregates() or {}
    readouts = agg.get("readouts") or {}
    now = default_as_of(console.config)
    rows = []
    for c in console.sources.campaigns():
        days = outcome_definition(console.config, c.target).days_to_mature
        left = (
            parse_stamp(c.confirmed_at) + timedelta(days=days) - now
        ).total_seconds() / 86_400
        found = readouts.get(c.campaign_id)
        rows.append(
            {
                "info": c,
                "mature": left <= 0,
                "days_left": max(0, int(-(-left // 1))),
                "readout": found if found and "error" not in found else None,
                "readout_error": (found or {}).get("error"),
            }
        )
    return rows


async def campaigns(console: Console, request: Request, who: Session) -> dict:
    return {
        "title": "Campaigns",
        "active": "/campaigns",
        "rows": _campaign_rows(console),
    }


async def campaign(console: Console, request: Request, who: Session) -> dict:
    wanted = request.path_params["campaign_id"]
    row = next(
        (r for r in _campaign_rows(console) if r["info"].campaign_id == wanted), None
    )
    context = {
        "title": f"Campaign {wanted}",
        "active": "/campaigns",
        "row": row,
        "charts": [],
    }
    if row is None:
        context["http_status"] = 404
        return context
    report = row["readout"]
    if report is not None:
        svgs = readout_report.plots(report)
        names = {
            readout_report.RATES_SVG: "Outcome rate per group with 95% intervals",
            readout_report.REVENUE_SVG: "Revenue per customer per group with 95% "
            "intervals",
            readout_report.DECILES_SVG: "Lift by decile of the score at selection",
            readout_report.CALIBRATION_SVG: "Control outcome rate by decile",
        }
        context["charts"] = [
            charts.labelled(f"readout-{i}", names[name], svg)
            for i, (name, svg) in enumerate(svgs.items())
        ]
        context["status_text"] = readout_report.status(report)
    return context


async def forget(console: Console, request: Request, who: Session) -> dict:
    context = {
        "title": "Forget a customer",
        "active": "/forget",
        "done": None,
        "error": None,
    }
    if request.method != "POST":
        return context
    form = request.state.form
    query, context["error"] = _customer_id(form)
    if not context["error"] and form.get("confirm") != "yes":
        context["error"] = "Tick the confirmation box: forgetting cannot be undone."
    if context["error"]:
        context["http_status"] = 400
        return context
    from core.atomic import Busy
    from serving.privacy.forget import forget as forget_customers

    try:
        erasure = forget_customers(console.config, [query])
    except Busy as exc:
        context["error"] = f"Busy: {exc}"
        context["http_status"] = 409
        return context
    log.info("console: key %s forgot 1 customer", who.key_name)
    context["done"] = {
        "rows": erasure.rows(),
        "places": {p: sum(ids.values()) for p, ids in erasure.removed.items()},
    }
    return context
