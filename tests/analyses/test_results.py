"""Tables in saved results: a DataFrame written to JSON and read back is the same frame, dtypes included."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from isletbayes.analyses.results import frame_from_json, frame_to_json


def _through_disk(frame: pd.DataFrame) -> pd.DataFrame:
    return frame_from_json(json.loads(json.dumps(frame_to_json(frame))))


@pytest.mark.parametrize("column", [
    pd.Series([0.1, math.nan, 1e-300, -2.5], dtype="float64"),
    pd.Series([0.0, 1.0, 2.0, 3.0], dtype="float64"),  # whole numbers kept as floats
    pd.Series([1, 2, 3, 2**53 + 1], dtype="int64"),
    pd.Series([1, None, 3, 4], dtype="Int64"),
    pd.Series([True, False, True, True], dtype="bool"),
    pd.Series(["a", "b", None, "d"], dtype="str"),
    pd.Series(["a", 1, 2.5, None], dtype="object"),
])
def test_a_table_round_trips_with_its_dtypes(column):
    frame = pd.DataFrame({"x": column, "y": np.arange(4, dtype="int64")},
                         index=pd.Index(["p", "q", "r", "s"], name="row"))
    back = _through_disk(frame)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert list(back.dtypes) == list(frame.dtypes) and back.index.name == "row"


def test_an_empty_table_round_trips():
    frame = pd.DataFrame({"a": pd.Series([], dtype="float64"), "b": pd.Series([], dtype="int64")})
    back = _through_disk(frame)
    assert list(back.columns) == ["a", "b"] and len(back) == 0
    assert list(back.dtypes) == list(frame.dtypes)
