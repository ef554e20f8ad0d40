"""A campaign readout for people: text, an HTML page with SVG plots, and its
MLflow run.

`text` and `html` render the dict of serving.outreach.readout.readout; the
plots are hand-written SVG (no plotting library, so the API's runtime can render
them too): outcome rates and revenue per customer per group with their 95%
intervals, the lift per decile of the score at selection with its interval, and
per decile the control's outcome rate beside the mean score (calibration in the
wild). `record` logs one MLflow run per readout in `<mlflow.experiment>.campaigns`:
the figures as metrics, the JSON, the page and the plots as artifacts.
"""

from __future__ import annotations

import html as html_lib
import json
import time
from collections.abc import Sequence

from core.config import ProjectConfig

CONTROL, TREATMENT = "control", "treatment"
JSON_FILE, HTML_FILE = "readout.json", "readout.html"
RATES_SVG, REVENUE_SVG, DECILES_SVG, CALIBRATION_SVG = (
    "rates.svg",
    "revenue.svg",
    "lift_by_decile.svg",
    "control_rate_by_decile.svg",
)
KIND = "campaign_readout"


def campaigns_experiment(config: ProjectConfig) -> str:
    return f"{config.mlflow.experiment}.campaigns"


# -- text ---------------------------------------------------------------------


def _pct(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def _pts(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.3f} pts"


def _num(x: float | None, digits: int = 3, sign: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+,.{digits}f}" if sign else f"{x:,.{digits}f}"


def _ci(e: dict, show) -> str:
    return f"[{show(e['low'])}, {show(e['high'])}]"


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def status(report: dict) -> str:
    if report["mature"]:
        return f"mature (as of {report['as_of']})"
    return (
        f"IMMATURE: {report['days_remaining']} day(s) of the outcome window remain "
        f"(as of {report['as_of']}); the figures are those observed so far"
    )


def text(report: dict) -> str:
    """The readout as plain text, for a terminal."""
    out = [
        f"campaign {report['campaign_id']} (target {report['target']}), confirmed "
        f"{report['confirmed_at']}",
        f"outcome: {report['outcome']['definition']}; window "
        f"{report['window']['start']} .. {report['window']['end']}",
        f"status: {status(report)}",
        "",
        f"{'group':10} {'customers':>10} {'outcomes':>9}  "
        f"{'rate [95% CI]':34} {'revenue/customer [95% CI]':30}",
    ]
    for name in (TREATMENT, CONTROL):
        g = report["groups"][name]
        rate, rev = g["rate"], g["revenue_per_customer"]
        out.append(
            f"{name:10} {g['customers']:>10,} {g['outcomes']:>9,}  "
            f"{_pct(rate['value']) + ' ' + _ci(rate, _pct):34} "
            f"{_num(rev['value']) + ' ' + _ci(rev, _num):30}"
        )
    lift = report["lift"]
    o, r = lift["outcome"], lift["revenue"]
    inc = report["incremental"]
    cost = report["cost"]
    srm = report["sample_ratio"]
    out += [
        "",
        "treatment - control (95% intervals):",
        f"  outcome rate  {_pts(o['absolute']['value'])} {_ci(o['absolute'], _pts)} "
        f"({o['absolute']['method']}); relative "
        f"{_pct(o['relative']['value'], 1)} {_ci(o['relative'], lambda x: _pct(x, 1))}"
        f"; p = {_p(o['p_value'])} ({o['test']})",
        f"  revenue/cust. {_num(r['absolute']['value'], sign=True)} "
        f"{_ci(r['absolute'], lambda x: _num(x, sign=True))}; relative "
        f"{_pct(r['relative']['value'], 1)} {_ci(r['relative'], lambda x: _pct(x, 1))}"
        f"; p = {_p(r['p_value'])} ({r['test']})",
        f"  incremental outcomes {_num(inc['outcomes']['value'], 1, True)} "
        f"{_ci(inc['outcomes'], lambda x: _num(x, 1, True))}; incremental revenue "
        f"{_num(inc['revenue']['value'], 2, True)} "
        f"{_ci(inc['revenue'], lambda x: _num(x, 2, True))}",
        f"  cost {cost['treated']:,} treated x {cost['contact_cost']:g} = "
        f"{cost['total']:,.2f}; ROI "
        + ("n/a" if report["roi"] is None else _pct(report["roi"], 1)),
        f"sample ratio: control {_pct(srm['observed_control_share'], 2)} against "
        f"{_pct(srm['expected_control_share'], 2)} expected, chi-square "
        f"{_num(srm['chi_square'], 2)}, p = {_p(srm['p_value'])}: "
        + ("MISMATCH" if srm["mismatch"] else "ok"),
    ]
    if (truth := report.get("truth")) is not None:
        out += [
            f"true effect (known, {truth['customers']:,} customers): outcome rate "
            f"{_pts(truth['outcome_effect'])} ({_covered(truth['outcome_covered'])}); "
            f"revenue/cust. {_num(truth['revenue_effect'], sign=True)} "
            f"({_covered(truth['revenue_covered'])})"
        ]
    if report["deciles"]:
        out += [
            "",
            "by decile of the score at selection (1 = highest):",
            f"{'decile':>6} {'treated':>8} {'control':>8} {'mean score':>10} "
            f"{'control rate':>13} {'treated rate':>13}  lift [95% CI]",
        ]
        for d in report["deciles"]:
            out.append(
                f"{d['decile']:>6} {d['treatment_customers']:>8,} "
                f"{d['control_customers']:>8,} {_num(d['mean_score']):>10} "
                f"{_pct(d['control_rate']['value'], 2):>13} "
                f"{_pct(d['treatment_rate']['value'], 2):>13}  "
                f"{_pts(d['lift']['value'])} {_ci(d['lift'], _pts)}"
            )
    if report["notes"]:
        out += ["", "notes:"] + [f"  - {n}" for n in report["notes"]]
    return "\n".join(line.rstrip() for line in out) + "\n"


def _covered(covered: bool | None) -> str:
    if covered is None:
        return "no interval"
    return "inside the 95% interval" if covered else "OUTSIDE the 95% interval"


def as_json(report: dict) -> str:
    return json.dumps(report, indent=2) + "\n"


# -- SVG ----------------------------------------------------------------------


def interval_chart(
    title: str,
    rows: Sequence[tuple[str, float | None, float | None, float | None]],
    show,
    *,
    width: int = 640,
) -> str:
    """Horizontal bars (value) with whiskers (low, high), one row per label,
    and a zero line when the range spans it."""
    row_h, left, right, top = 26, 150, 110, 30
    height = top + row_h * max(1, len(rows)) + 24
    values = [x for _, v, lo, hi in rows for x in (v, lo, hi) if x is not None]
    lo_all, hi_all = min([0.0, *values]), max([0.0, *values])
    span = (hi_all - lo_all) or 1.0

    def x(v: float) -> float:
        return left + (v - lo_all) / span * (width - left - right)

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        "font-family='sans-serif' font-size='12'>",
        f"<text x='8' y='18' font-weight='bold'>{html_lib.escape(title)}</text>",
        f"<line x1='{x(0):.1f}' y1='{top - 4}' x2='{x(0):.1f}' "
        f"y2='{height - 20}' stroke='#888' stroke-dasharray='3,3'/>",
    ]
    for i, (label, v, lo, hi) in enumerate(rows):
        y = top + i * row_h
        parts.append(f"<text x='8' y='{y + 16}'>{html_lib.escape(str(label))}</text>")
        if v is None:
            parts.append(f"<text x='{left}' y='{y + 16}' fill='#888'>n/a</text>")
            continue
        x0, x1 = sorted((x(0), x(v)))
        parts.append(
            f"<rect x='{x0:.1f}' y='{y + 5}' width='{max(x1 - x0, 1):.1f}' "
            "height='14' fill='#7aa6d6'/>"
        )
        if lo is not None and hi is not None:
            yc = y + 12
            parts += [
                f"<line x1='{x(lo):.1f}' y1='{yc}' x2='{x(hi):.1f}' y2='{yc}' "
                "stroke='#222' stroke-width='1.5'/>",
                f"<line x1='{x(lo):.1f}' y1='{yc - 6}' x2='{x(lo):.1f}' "
                f"y2='{yc + 6}' stroke='#222'/>",
                f"<line x1='{x(hi):.1f}' y1='{yc - 6}' x2='{x(hi):.1f}' "
                f"y2='{yc + 6}' stroke='#222'/>",
            ]
        parts.append(
            f"<text x='{width - right + 8}' y='{y + 16}'>{html_lib.escape(show(v))}"
            "</text>"
        )
    parts.append(
        f"<text x='8' y='{height - 6}' fill='#555'>bars: estimate; whiskers: 95% "
        "interval</text></svg>"
    )
    return "\n".join(parts)


def plots(report: dict) -> dict[str, str]:
    """The readout's SVG plots by file name."""
    groups = report["groups"]

    def group_rows(key: str) -> list[tuple]:
        return [
            (
                name,
                groups[name][key]["value"],
                groups[name][key]["low"],
                groups[name][key]["high"],
            )
            for name in (TREATMENT, CONTROL)
        ]

    out = {
        RATES_SVG: interval_chart("outcome rate", group_rows("rate"), _pct),
        REVENUE_SVG: interval_chart(
            "revenue per customer", group_rows("revenue_per_customer"), _num
        ),
    }
    if report["deciles"]:
        out[DECILES_SVG] = interval_chart(
            "lift (treatment - control) by decile of the score at selection",
            [
                (
                    f"decile {d['decile']}",
                    d["lift"]["value"],
                    d["lift"]["low"],
                    d["lift"]["high"],
                )
                for d in report["deciles"]
            ],
            _pts,
        )
        out[CALIBRATION_SVG] = interval_chart(
            "control outcome rate by decile (mean score at selection in the label)",
            [
                (
                    f"{d['decile']}: score {_num(d['mean_score'], 2)}",
                    d["control_rate"]["value"],
                    d["control_rate"]["low"],
                    d["control_rate"]["high"],
                )
                for d in report["deciles"]
            ],
            _pct,
        )
    return out


# -- HTML ---------------------------------------------------------------------


def html(report: dict) -> str:
    """A self-contained page: the text readout, then the plots inline."""
    title = f"Campaign readout: {report['campaign_id']}"
    style = (
        "body{font-family:sans-serif;margin:2em}pre{background:#f6f6f6;padding:1em}"
        ".immature{background:#fbeec2;padding:.5em}.mismatch{background:#f8d0d0;"
        "padding:.5em}"
    )
    banners = []
    if not report["mature"]:
        banners.append(f"<p class='immature'>{html_lib.escape(status(report))}</p>")
    if report["sample_ratio"]["mismatch"]:
        banners.append(
            "<p class='mismatch'>Sample-ratio mismatch: the observed control share "
            "is not the one drawn; do not trust the lifts before finding why.</p>"
        )
    figures = "\n".join(f"<p>{svg}</p>" for svg in plots(report).values())
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>"
        f"{html_lib.escape(title)}</title><style>{style}</style></head><body>"
        f"<h1>{html_lib.escape(title)}</h1>{''.join(banners)}"
        f"<pre>{html_lib.escape(text(report))}</pre>{figures}</body></html>\n"
    )


RENDER = {"text": text, "json": as_json, "html": html}


# -- MLflow -------------------------------------------------------------------


def metrics(report: dict) -> dict[str, float]:
    """The readout's figures as flat MLflow metrics (undefined ones left out)."""
    groups, lift, inc = report["groups"], report["lift"], report["incremental"]
    found = {
        "days_remaining": report["days_remaining"],
        "roi": report["roi"],
        "cost": report["cost"]["total"],
        "srm_p_value": report["sample_ratio"]["p_value"],
        "srm_observed_control_share": report["sample_ratio"]["observed_control_share"],
        "outcome_p_value": lift["outcome"]["p_value"],
        "revenue_p_value": lift["revenue"]["p_value"],
    }
    for name in (TREATMENT, CONTROL):
        g = groups[name]
        found[f"{name}_customers"] = g["customers"]
        found[f"{name}_rate"] = g["rate"]["value"]
        found[f"{name}_revenue_per_customer"] = g["revenue_per_customer"]["value"]
    estimates = {
        "outcome_lift": lift["outcome"]["absolute"],
        "outcome_lift_relative": lift["outcome"]["relative"],
        "revenue_lift": lift["revenue"]["absolute"],
        "revenue_lift_relative": lift["revenue"]["relative"],
        "incremental_outcomes": inc["outcomes"],
        "incremental_revenue": inc["revenue"],
    }
    for key, e in estimates.items():
        found[key], found[f"{key}_low"], found[f"{key}_high"] = (
            e["value"],
            e["low"],
            e["high"],
        )
    for d in report["deciles"]:
        found[f"decile_{d['decile']:02d}_control_rate"] = d["control_rate"]["value"]
        found[f"decile_{d['decile']:02d}_lift"] = d["lift"]["value"]
    return {k: float(v) for k, v in found.items() if v is not None}


def record(config: ProjectConfig, tracking_uri: str, report: dict) -> str:
    """One MLflow run for this readout in `<experiment>.campaigns`; its id."""
    from mlflow.tracking import MlflowClient

    from model.registry import configure, log_record_run

    experiment_id = configure(tracking_uri, campaigns_experiment(config))
    client = MlflowClient(tracking_uri, tracking_uri)
    files = {JSON_FILE: as_json(report), HTML_FILE: html(report), **plots(report)}
    return log_record_run(
        client,
        experiment_id,
        run_name=f"readout-{report['campaign_id']}-{report['as_of'][:10]}",
        tags={
            "kind": KIND,
            "campaign_id": report["campaign_id"],
            "target": report["target"],
            "mature": str(report["mature"]).lower(),
            "srm_mismatch": str(report["sample_ratio"]["mismatch"]).lower(),
        },
        params={
            "campaign_id": report["campaign_id"],
            "target": report["target"],
            "outcome": report["outcome"]["definition"][:500],
            "horizon_days": report["outcome"]["horizon_days"],
            "confirmed_at": report["confirmed_at"],
            "as_of": report["as_of"],
            "control_share": report["control_share"],
            "contact_cost": report["cost"]["contact_cost"],
        },
        metrics=metrics(report),
        stamp_ms=int(time.time() * 1000),
        notes={"notes": report["notes"]},
        files=files,
    )
