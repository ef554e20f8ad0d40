"""Micro-benchmark of reason codes: 3 models, ~100 features, 100 customers.

Not a test: `python -m benchmarks.explain [--trees 100 200 400]` prints the
median time of one explain call (one attribution call per model, top-k, phrases)
per tree count and method (shap, path), next to the plain predict it rides along
with. The models are
LightGBM boosters with 31 leaves trained for a fixed number of rounds (no early
stopping, so every tree is grown) on seeded synthetic data under the demo
config's feature names.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np

from core.config import load_config
from features.definition import FeatureSpec, catalogue
from model.encoding import Encoding
from model.registry import RegisteredModel
from serving.reasons import reasons

ROOT = Path(__file__).resolve().parents[1]
ATTRIBUTES = ("days_since_signup_time", "plan", "region", "age")


def _models(trees: int, rows: int, seed: int) -> tuple[list[RegisteredModel], dict]:
    spec = FeatureSpec.from_config(load_config(ROOT / "propensity.yaml"))
    event = catalogue(spec).features
    names = [f.name for f in event] + list(ATTRIBUTES)
    descriptions = {f.name: f.description for f in event}
    rng = np.random.default_rng(seed)
    x = rng.gamma(1.0, 10.0, size=(rows, len(names)))
    x[:, names.index("plan")] = rng.integers(0, 3, rows)
    x[:, names.index("region")] = rng.integers(0, 5, rows)
    x[rng.random(x.shape) < 0.05] = np.nan
    encoding = Encoding(
        tuple(names),
        {"plan": ("basic", "plus", "pro"), "region": tuple("abcde")},
    )
    models = []
    for target in range(3):
        weights = rng.normal(size=len(names)) * (rng.random(len(names)) < 0.2)
        logit = np.nan_to_num(x) @ weights / 30
        y = (rng.random(rows) < 1 / (1 + np.exp(-(logit - logit.mean())))).astype(int)
        params = {
            "objective": "binary",
            "num_leaves": 31,
            "learning_rate": 0.05,
            "min_data_in_leaf": 20,
            "verbose": -1,
            "seed": seed,
        }
        data = lgb.Dataset(
            x, y, feature_name=names, categorical_feature=["plan", "region"]
        )
        booster = lgb.train(params, data, num_boost_round=trees)
        models.append(RegisteredModel(f"m{target}", "1", booster, encoding, {}, None))
    return models, descriptions


def _median_ms(call: Callable[[], object], repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    for trees in args.trees:
        models, descriptions = _models(trees, rows=5000, seed=0)
        batch = np.random.default_rng(1).gamma(
            1.0, 10.0, (args.customers, len(models[0].encoding.features))
        )
        batch[:, -3:-1] = 1.0  # valid plan and region codes

        def explain(method: str, batch=batch, models=models, words=descriptions):
            return [reasons(m, batch, 3, {"age"}, words, method) for m in models]

        def predict(batch=batch, models=models) -> object:
            return [m.booster.predict(batch) for m in models]

        def shap() -> object:
            return explain("shap")

        def path() -> object:
            return explain("path")

        each = sum(m.booster.num_trees() for m in models) // len(models)
        print(
            f"{args.customers} customers x 3 models x "
            f"{len(models[0].encoding.features)} features, {each} trees of 31 "
            f"leaves: explain shap {_median_ms(shap, args.repeat):.1f} ms, "
            f"path {_median_ms(path, args.repeat):.1f} ms, "
            f"predict {_median_ms(predict, args.repeat):.2f} ms (median)"
        )


if __name__ == "__main__":
    main()
