"""BG/NBD on the real CDNOW files: the published estimates and the reference AUCs.

FHL 2005 fit the BG/NBD to the CDNOW sample on weeks 1-39 (1997-01-01 ..
1997-09-30): r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4. The AUCs
for "any purchase in the 39 weeks after 1997-09-30", ranking by expected purchases,
are the reference figures of ../shared/data/README.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from features.bgnbd import BGNBD, EXPECTED_PURCHASES, purchase_baseline, rfm_summary
from features.columns import CUSTOMER_ID, EVENT_TIME
from features.sources.adapters import ROLES, cdnow
from tests.helpers import ROOT

pytestmark = [pytest.mark.realdata]

DATA = ROOT.parent / "shared" / "data" / "cdnow"
CUTOFF = datetime(1997, 10, 1)  # calibration: 1997-01-01 .. 1997-09-30
HORIZON_DAYS = 39 * 7


def events(name: str) -> pd.DataFrame:
    path = DATA / name
    if not path.is_file():
        pytest.skip(
            f"{name} not found at {path}: the real datasets live in ../shared/data"
        )
    return cdnow(path).to_pandas()


def holdout_auc(frame: pd.DataFrame) -> float:
    """AUC of BG/NBD expected purchases for any purchase in the 39-week holdout."""
    _, scores = purchase_baseline(frame, CUTOFF, HORIZON_DAYS, ROLES["cdnow"].role_of())
    times = frame[EVENT_TIME]
    window = (times >= CUTOFF) & (times < CUTOFF + timedelta(days=HORIZON_DAYS))
    bought = scores.index.isin(frame.loc[window, CUSTOMER_ID])
    return float(roc_auc_score(bought, scores[EXPECTED_PURCHASES]))


def test_reproduces_the_published_cdnow_estimates() -> None:
    history = rfm_summary(events("CDNOW_sample.txt"), CUTOFF)

    fitted = BGNBD.fit(history.x, history.t_x, history["T"])

    assert len(history) == 2_357
    # Every published digit: within half a unit of the last one.
    assert fitted.r == pytest.approx(0.243, abs=5e-4)
    assert fitted.alpha == pytest.approx(4.414, abs=5e-4)
    assert fitted.a == pytest.approx(0.793, abs=5e-4)
    assert fitted.b == pytest.approx(2.426, abs=5e-4)
    assert fitted.log_likelihood == pytest.approx(-9582.4, abs=0.05)


@pytest.mark.parametrize(
    "name, auc",
    [("CDNOW_sample.txt", 0.7725), ("CDNOW_master.txt", 0.7630)],
    ids=["sample", "master"],
)
def test_holdout_auc_matches_the_reference(name: str, auc: float) -> None:
    assert holdout_auc(events(name)) == pytest.approx(auc, abs=0.002)
