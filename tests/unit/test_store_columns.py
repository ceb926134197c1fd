"""Batch preparation of the metric writers: pure numpy, no database."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.store import HeadMetric, InvalidInput, head_metric_grid
from service.store.columns import HEAD_LAYOUT, SCALAR_LAYOUT, prepare_batch
from service.store.validation import decode_cursor, encode_cursor


def _cols(**overrides: object) -> dict[str, object]:
    cols: dict[str, object] = {
        "variant_id": np.array([1, 1, 2]),
        "step": np.array([10, 10, 10]),
        "layer": np.array([0, 1, 0]),
        "head": np.array([3, 3, 3]),
        "metric": "entropy",
        "value": np.array([0.5, 0.25, 1.0]),
    }
    cols.update(overrides)
    return cols


def test_columns_with_broadcast_scalars() -> None:
    batch = prepare_batch(_cols(), HEAD_LAYOUT)
    assert len(batch) == 3
    assert batch.names == ["entropy"]
    assert batch.keys["variant_id"].tolist() == [1, 1, 2]
    assert batch.keys["metric_id"].tolist() == [0, 0, 0]
    assert batch.values.tolist() == [0.5, 0.25, 1.0]


def test_records_and_entities_match_columns() -> None:
    records = [(1, 10, 0, 3, "entropy", 0.5), HeadMetric(1, 10, 1, 3, "entropy", 0.25)]
    records.append((2, 10, 0, 3, "entropy", 1.0))
    from_records = prepare_batch(records, HEAD_LAYOUT)
    from_columns = prepare_batch(_cols(), HEAD_LAYOUT)
    for key in from_columns.keys:
        assert from_records.keys[key].tolist() == from_columns.keys[key].tolist()
    assert from_records.values.tolist() == from_columns.values.tolist()


def test_sorted_by_key_and_duplicates_keep_the_last() -> None:
    batch = prepare_batch(
        _cols(
            variant_id=np.array([2, 1, 2, 1]),
            step=np.array([5, 5, 5, 4]),
            layer=np.array([0, 0, 0, 0]),
            head=np.array([0, 0, 0, 0]),
            value=np.array([1.0, 2.0, 3.0, 4.0]),
        ),
        HEAD_LAYOUT,
    )
    assert batch.keys["variant_id"].tolist() == [1, 1, 2]
    assert batch.keys["step"].tolist() == [4, 5, 5]
    assert batch.values.tolist() == [4.0, 2.0, 3.0]  # (2, 5, 0, 0) written twice: 3.0 wins


def test_wide_keys_fall_back_to_lexsort() -> None:
    # spans that cannot be packed into one int64 still sort and de-duplicate
    n = 6
    batch = prepare_batch(
        {
            "variant_id": np.array([2**31 - 1, 1, 2**31 - 1, 1, 5, 5]),
            "step": np.array([2**31 - 1, 0, 2**31 - 1, 0, 7, 7]),
            "layer": np.array([2**15 - 1, 0, 2**15 - 1, 0, 1, 1]),
            "head": np.array([2**15 - 1, 0, 2**15 - 1, 0, 2, 2]),
            "metric": np.array(["a", "b", "a", "b", "a", "a"]),
            "value": np.arange(n, dtype=float),
        },
        HEAD_LAYOUT,
    )
    assert batch.keys["variant_id"].tolist() == [1, 5, 2**31 - 1]
    assert batch.values.tolist() == [3.0, 5.0, 2.0]


def test_metric_name_column_maps_to_codes() -> None:
    batch = prepare_batch(_cols(metric=np.array(["b", "a", "b"])), HEAD_LAYOUT)
    assert batch.names == ["a", "b"]
    assert sorted(batch.keys["metric_id"].tolist()) == [0, 1, 1]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected_with_the_record(bad: float) -> None:
    with pytest.raises(InvalidInput, match=r"must be finite; record 1 \(variant_id=1, step=10"):
        prepare_batch(_cols(value=np.array([0.5, bad, 1.0])), HEAD_LAYOUT)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"step": np.array([1.5, 2.0, 3.0])}, "'step' must hold integers, got dtype float64"),
        ({"layer": np.array([0, -1, 0])}, "'layer' must be between 0 and 32767; record 1 has -1"),
        ({"head": np.array([0, 40000, 0])}, "'head' must be between 0 and 32767"),
        ({"variant_id": np.array([0, 1, 1])}, "'variant_id' must be between 1"),
        ({"value": np.array(["x", "y", "z"])}, "'value' must hold numbers"),
        ({"metric": "bad name!"}, "characters MLflow keys do not allow"),
        ({"metric": "m" * 101}, "the limit is 100"),
        ({"metric": np.array([1, 2, 3])}, "must hold strings"),
        ({"step": np.array([1, 2])}, "columns differ in length"),
        ({"step": np.zeros((3, 1), dtype=int)}, r"has shape \(3, 1\); pass 1-D columns"),
    ],
)
def test_bad_columns_name_the_problem(override: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        prepare_batch(_cols(**override), HEAD_LAYOUT)


def test_missing_and_unknown_columns() -> None:
    cols = _cols()
    del cols["head"]
    cols["heads"] = 1
    with pytest.raises(InvalidInput, match=r"missing \['head'\], unexpected \['heads'\]"):
        prepare_batch(cols, HEAD_LAYOUT)


def test_bad_records() -> None:
    with pytest.raises(InvalidInput, match="record 1 must be a 6-tuple"):
        prepare_batch([(1, 1, 0, 0, "m", 1.0), (1, 1, 0)], HEAD_LAYOUT)
    with pytest.raises(InvalidInput, match="record 0 is str '1'"):
        prepare_batch([("1", 1, 0, 0, "m", 1.0)], HEAD_LAYOUT)
    with pytest.raises(InvalidInput, match="record 0 is bool"):
        prepare_batch([(True, 1, 0, 0, "m", 1.0)], HEAD_LAYOUT)
    with pytest.raises(InvalidInput, match="must be a mapping of columns"):
        prepare_batch("variant_id", HEAD_LAYOUT)


def test_empty_batch() -> None:
    assert len(prepare_batch([], HEAD_LAYOUT)) == 0
    assert len(prepare_batch([], SCALAR_LAYOUT)) == 0


def test_scalar_layout() -> None:
    batch = prepare_batch([(3, 2, "loss", 1.5), (3, 1, "loss", 2.5)], SCALAR_LAYOUT)
    assert batch.keys["step"].tolist() == [1, 2]
    assert batch.values.tolist() == [2.5, 1.5]


def test_head_metric_grid_flattens_variant_layer_head() -> None:
    values = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    cols = head_metric_grid([7, 9], 100, "entropy", values)
    batch = prepare_batch(cols, HEAD_LAYOUT)
    assert len(batch) == 24
    i = 4 * 3 + 2 * 4 + 1  # variant 9, layer 2, head 1
    assert batch.keys["variant_id"][i] == 9
    assert batch.keys["layer"][i] == 2
    assert batch.keys["head"][i] == 1
    assert batch.values[i] == values[1, 2, 1]
    with pytest.raises(InvalidInput, match=r"\[variant, layer, head\]"):
        head_metric_grid([7], 1, "m", np.zeros((1, 2)))
    with pytest.raises(InvalidInput, match="one id per row"):
        head_metric_grid([7], 1, "m", values)


def test_cursor_round_trip_and_garbage() -> None:
    assert decode_cursor(encode_cursor(1, 2, 3), 3) == (1, 2, 3)
    assert decode_cursor(None, 3) is None
    with pytest.raises(InvalidInput, match="not one this listing returned"):
        decode_cursor("1.x", 2)
