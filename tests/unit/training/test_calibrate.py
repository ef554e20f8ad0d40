"""Calibration maps: fitted on out-of-time predictions, applied with numpy alone."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import log_loss

from model.calibration import Calibrator
from training.calibrate import choose
from training.calibrate import fit as fit_calibrator
from training.metrics import expected_calibration_error


def overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True probabilities q; the model reports q pushed towards 0 and 1."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.02, 0.6, n)
    y = (rng.uniform(size=n) < q).astype(int)
    logit = np.log(q / (1 - q)) * 2.0
    return 1 / (1 + np.exp(-logit)), y


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_lowers_log_loss_and_ece_out_of_sample(method: str) -> None:
    p_fit, y_fit = overconfident(20_000, 1)
    p, y = overconfident(20_000, 2)
    cal = fit_calibrator(method, p_fit, y_fit)
    q = cal.apply(p)
    assert log_loss(y, q) < log_loss(y, p) - 0.01
    assert expected_calibration_error(y, q) < 0.02 < expected_calibration_error(y, p)
    assert np.all(np.diff(cal.apply(np.linspace(0, 1, 101))) >= 0)  # monotone


def test_isotonic_applies_as_sklearn_predicts_and_round_trips() -> None:
    p, y = overconfident(5_000, 3)
    cal = Calibrator.from_dict(fit_calibrator("isotonic", p, y).to_dict())
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(p, y)
    grid = np.r_[0.0, np.sort(np.random.default_rng(4).uniform(size=500)), 1.0]
    np.testing.assert_allclose(cal.apply(grid), iso.predict(grid), atol=1e-12)


def test_identity_and_unknown_method() -> None:
    p = np.array([0.1, 0.5, 0.9])
    np.testing.assert_array_equal(Calibrator.from_dict(None).apply(p), p)
    with pytest.raises(ValueError, match="isotonic"):
        fit_calibrator("beta", p, np.array([0, 1, 1]))


def test_choose_keeps_the_lower_log_loss_on_the_later_origin() -> None:
    earlier, later = overconfident(10_000, 5), overconfident(10_000, 6)
    choice = choose(earlier, later)
    assert set(choice.log_loss) == {"none", "isotonic", "platt"}
    assert choice.log_loss[choice.method] == min(choice.log_loss.values())
    assert choice.method != "none"  # overconfident: a map helps
    assert choose(earlier, later, "platt").method == "platt"


def test_choose_never_calibrates_to_a_worse_log_loss() -> None:
    """Already calibrated predictions: no map beats the raw ones on the later
    origin by enough, or none wins; either way never above the raw log loss."""
    rng = np.random.default_rng(7)

    def calibrated(n: int) -> tuple[np.ndarray, np.ndarray]:
        q = rng.uniform(0.02, 0.6, n)
        return q, (rng.uniform(size=n) < q).astype(int)

    choice = choose(calibrated(3_000), calibrated(3_000))
    assert choice.log_loss[choice.method] <= choice.log_loss["none"]


def test_choose_fits_no_map_on_too_few_positives() -> None:
    """About 20 positives on the earlier origins: too few for Platt (30) and
    isotonic (200), so the raw predictions are served."""
    p, y = overconfident(200, 8)
    keep = np.flatnonzero(y == 0)[:180].tolist() + np.flatnonzero(y == 1)[:20].tolist()
    choice = choose((p[keep], y[keep]), overconfident(2_000, 9))
    assert choice.method == "none"
    assert set(choice.log_loss) == {"none"}
    assert fit_calibrator("none", p, y).method == "identity"
