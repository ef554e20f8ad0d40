"""`propensity tune`: search space, trial 0, snippet, arguments (no data, no MLflow)."""

from __future__ import annotations

import optuna
import pytest
import yaml
from pydantic import ValidationError

from cli.main import main
from core.config import LightGBMConfig
from training.model import lgb_params
from training.tune import SEARCH, config_params, search_space, snippet, suggest

# every tuned value outside the default ranges
OUTSIDE = LightGBMConfig(
    num_leaves=255,
    learning_rate=1.0,
    min_data_in_leaf=1,
    feature_fraction=0.2,
    bagging_fraction=0.1,
    lambda_l2=50.0,
)


def test_the_default_config_lies_inside_the_default_ranges() -> None:
    assert search_space(LightGBMConfig()) == SEARCH


def test_the_ranges_widen_to_hold_the_config_and_trial_0_is_it_exactly() -> None:
    space = search_space(OUTSIDE)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial(config_params(OUTSIDE))
    study.optimize(lambda trial: len(suggest(trial, space)), n_trials=2)
    first = study.trials[0]
    assert first.params == config_params(OUTSIDE)
    for name, distribution in first.distributions.items():
        assert distribution.low <= first.params[name] <= distribution.high, name
    # the widened ranges are where later trials sample too
    assert study.trials[1].distributions == first.distributions


def test_the_snippet_is_the_whole_lightgbm_block() -> None:
    text = snippet(OUTSIDE, "tuned\nby a test")
    assert text.startswith("# tuned\n# by a test\n")
    assert LightGBMConfig.model_validate(yaml.safe_load(text)) == OUTSIDE


def test_lambda_l2_defaults_to_zero_for_existing_configs() -> None:
    config = LightGBMConfig.model_validate({"num_leaves": 15})
    assert config.lambda_l2 == 0 and lgb_params(config)["lambda_l2"] == 0
    with pytest.raises(ValidationError, match="lambda_l2"):
        LightGBMConfig(lambda_l2=-1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "Invalid value for '--trials': 0 is not in the range x>=1"),
        (["--trials", "three"], "Invalid value for '--trials': 'three' is not a valid"),
        (["--trials", "3", "--timeout", "-5"], "'--timeout': -5.0 is not in the range"),
        (["--trials", "3", "--timeout", "inf"], "'--timeout': inf is not in the range"),
        (
            ["--trials", "3", "--timeout", "nan"],
            "'--timeout': expected a positive number, got 'nan'",
        ),
        ([], "Missing option '--trials'"),
    ],
)
def test_tune_rejects_bad_arguments(
    args: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(["tune", "--target", "churn", *args]) == 2
    assert message in capsys.readouterr().err
