"""The console's SVG charts: an accessible name, the marks their data asks for."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from serving.console import charts

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_histogram_draws_one_bar_per_bin_scaled_to_the_largest() -> None:
    svg = _parse(charts.histogram("h", "Scores <churn>", [0, 0.5, 1], [10, 5]))
    assert svg.get("role") == "img" and svg.get("aria-labelledby") == "h-title"
    assert svg.find(f"{SVG}title").text == "Scores <churn>"
    bars = [r for r in svg.iter(f"{SVG}rect") if r.get("fill") == charts.MARK]
    heights = [float(r.get("height")) for r in bars]
    assert len(bars) == 2 and heights[0] == 2 * heights[1]


def test_bars_lines_and_curve_are_well_formed_with_their_marks() -> None:
    bars = _parse(
        charts.bars("b", "PSI", [("a", 0.2), ("b", 0.1)], marks=[(0.25, "alert")])
    )
    assert (
        len([r for r in bars.iter(f"{SVG}rect") if r.get("fill") == charts.MARK]) == 2
    )
    lines = _parse(
        charts.lines(
            "l",
            "AUC",
            ["d1", "d2", "d3"],
            [("real", [0.7, None, 0.8]), ("exp", [0.75] * 3)],
        )
    )
    assert len(list(lines.iter(f"{SVG}polyline"))) == 2
    assert len(list(lines.iter(f"{SVG}circle"))) == 5
    curve = _parse(charts.curve("c", "map", [0, 0.5, 1], [0, 0.4, 1]))
    assert len(curve.find(f"{SVG}polyline").get("points").split()) == 3


def test_labelled_gives_a_foreign_svg_a_role_and_name() -> None:
    svg = _parse(
        charts.labelled(
            "r",
            "Rates",
            "<svg xmlns='http://www.w3.org/2000/svg' width='10'><text>x</text></svg>",
        )
    )
    assert svg.get("role") == "img" and svg.find(f"{SVG}title").text == "Rates"
