"""Feature rows -> model matrix: order, categorical codes, missing values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from model.encoding import Encoding

FRAME = pd.DataFrame(
    {"n": [1.0, None, 3.0], "plan": ["pro", "basic", None], "k": [5, 6, 7]}
)


def test_fit_orders_vocabulary_and_matrix_follows_the_feature_list() -> None:
    enc = Encoding.fit(FRAME, ["k", "plan", "n"], ["plan"])
    assert enc.vocabularies == {"plan": ("basic", "pro")}
    m = enc.to_matrix(FRAME)
    assert m[:, 0].tolist() == [5, 6, 7]
    assert m[:2, 1].tolist() == [1, 0] and math.isnan(m[2, 1])
    assert m[0, 2] == 1.0 and math.isnan(m[1, 2])


def test_unknown_category_is_missing_and_round_trip() -> None:
    enc = Encoding.from_dict(Encoding.fit(FRAME, ["plan", "n"], ["plan"]).to_dict())
    m = enc.to_matrix(pd.DataFrame({"n": [1.0], "plan": ["enterprise"]}))
    assert math.isnan(m[0, 0])


def test_record_path_equals_frame_path() -> None:
    enc = Encoding.fit(FRAME, ["n", "plan", "k"], ["plan"])
    rows = np.empty((3, 3))
    for i, rec in enumerate(FRAME.to_dict("records")):
        rec = {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in rec.items()
        }
        enc.record_to_row(rec, rows[i])
    np.testing.assert_array_equal(rows, enc.to_matrix(FRAME))


def test_missing_feature_column_is_named() -> None:
    enc = Encoding(("n", "absent"), {})
    with pytest.raises(KeyError, match="absent"):
        enc.to_matrix(FRAME)
