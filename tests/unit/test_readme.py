"""README's request example carries exactly the demo model's feature list."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from core.config import load_config
from features.definition import FeatureSpec, catalogue
from features.sources.load import load
from features.synthetic.demo import generate

ROOT = Path(__file__).resolve().parents[2]


def test_curl_example_matches_the_demo_catalogue(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    body = re.search(r"-d @- <<'EOF'\n(.*?)\nEOF", readme, re.S).group(1)
    features = json.loads(body)["customers"][0]["features"]
    summary = generate(tmp_path, customers=50, seed=1, days=60)
    ds = load(summary.events_path, summary.customers_path, as_of=datetime(2030, 1, 1))
    spec = FeatureSpec.from_config(load_config(ROOT / "propensity.yaml"))
    assert list(features) == catalogue(spec, ds.customers).names
