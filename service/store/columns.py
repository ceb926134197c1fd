"""Turning metric batches (records or columns) into validated, de-duplicated numpy columns.

Pure numpy, no database: everything here runs before a transaction opens, so a bad batch
is rejected before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, is_dataclass
from typing import Any

import numpy as np

from service.store.errors import InvalidInput
from service.store.validation import MAX_INT32, check_metric_name

INT16_MAX = 2**15 - 1


@dataclass(frozen=True, slots=True)
class KeyColumn:
    name: str
    pg_type: str  # "int4" / "int2": the staging column and the binary COPY width
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class BatchLayout:
    """Input columns of one kind of metric batch and the key of its table."""

    label: str  # "head metric" / "scalar metric", for messages
    fields: tuple[str, ...]  # input columns in record order
    name_field: str  # the column holding metric names
    keys: tuple[KeyColumn, ...]  # the table's primary key, in order (metric_id = name codes)


HEAD_LAYOUT = BatchLayout(
    label="head metric",
    fields=("variant_id", "step", "layer", "head", "metric", "value"),
    name_field="metric",
    keys=(
        KeyColumn("variant_id", "int4", 1, MAX_INT32),
        KeyColumn("metric_id", "int2", 0, INT16_MAX),
        KeyColumn("step", "int4", 0, MAX_INT32),
        KeyColumn("layer", "int2", 0, INT16_MAX),
        KeyColumn("head", "int2", 0, INT16_MAX),
    ),
)
SCALAR_LAYOUT = BatchLayout(
    label="scalar metric",
    fields=("variant_id", "step", "name", "value"),
    name_field="name",
    keys=(
        KeyColumn("variant_id", "int4", 1, MAX_INT32),
        KeyColumn("metric_id", "int2", 0, INT16_MAX),
        KeyColumn("step", "int4", 0, MAX_INT32),
    ),
)


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """Validated columns sorted by the table key with duplicate keys collapsed (last wins).
    ``keys["metric_id"]`` holds indexes into ``names`` until the ids are known."""

    keys: dict[str, np.ndarray]  # int64 columns, by KeyColumn name
    values: np.ndarray  # float64
    names: list[str]  # distinct metric names, indexed by the name codes

    def __len__(self) -> int:
        return len(self.values)


def prepare_batch(data: Any, layout: BatchLayout) -> PreparedBatch:
    columns = _to_columns(data, layout)
    n = len(columns["value"])
    if n == 0:
        empty = {k.name: np.zeros(0, dtype=np.int64) for k in layout.keys}
        return PreparedBatch(empty, np.zeros(0, dtype=np.float64), [])
    names, codes = _name_codes(columns[layout.name_field], layout, n)
    keys: dict[str, np.ndarray] = {}
    for key in layout.keys:
        if key.name == "metric_id":
            keys[key.name] = codes
        else:
            keys[key.name] = _int_column(columns[key.name], key, layout)
    values = _value_column(columns["value"], layout, keys)
    order = _sorted_unique_order(keys, layout)
    if order is not None:
        keys = {k: v[order] for k, v in keys.items()}
        values = values[order]
    return PreparedBatch(keys, values, names)


# -- input forms -----------------------------------------------------------------------------


def _to_columns(data: Any, layout: BatchLayout) -> dict[str, np.ndarray]:
    if isinstance(data, Mapping):
        return _from_mapping(data, layout)
    if isinstance(data, str | bytes) or not isinstance(data, Sequence | np.ndarray):
        raise InvalidInput(
            f"{layout.label} batch must be a mapping of columns {list(layout.fields)} or a "
            f"sequence of records, got {type(data).__name__}"
        )
    return _from_records(list(data), layout)


def _from_mapping(data: Mapping[str, Any], layout: BatchLayout) -> dict[str, np.ndarray]:
    missing = [f for f in layout.fields if f not in data]
    extra = [str(k) for k in data if k not in layout.fields]
    if missing or extra:
        raise InvalidInput(
            f"{layout.label} columns must be exactly {list(layout.fields)}; "
            f"missing {missing}, unexpected {extra}"
        )
    arrays = {f: np.asarray(data[f]) for f in layout.fields}
    lengths = {f: a.shape[0] for f, a in arrays.items() if a.ndim == 1}
    for f, a in arrays.items():
        if a.ndim > 1:
            raise InvalidInput(
                f"{layout.label} column {f!r} has shape {a.shape}; pass 1-D columns "
                "(flatten with .ravel(), or use head_metric_grid for [variant, layer, head] "
                "tensors)"
            )
    if len(set(lengths.values())) > 1:
        raise InvalidInput(f"{layout.label} columns differ in length: {lengths}")
    n = next(iter(lengths.values()), 1)
    return {f: (np.broadcast_to(a, (n,)) if a.ndim == 0 else a) for f, a in arrays.items()}


def _from_records(data: Sequence[Any], layout: BatchLayout) -> dict[str, np.ndarray]:
    width = len(layout.fields)
    rows: list[tuple[Any, ...]] = []
    for i, record in enumerate(data):
        row = astuple(record) if is_dataclass(record) and not isinstance(record, type) else record
        if not isinstance(row, tuple | list) or len(row) != width:
            raise InvalidInput(
                f"{layout.label} record {i} must be a {width}-tuple {layout.fields} or an "
                f"entity, got {record!r}"
            )
        rows.append(tuple(row))
    if not rows:
        return {f: np.empty(0) for f in layout.fields}
    transposed = list(zip(*rows, strict=True))
    out = {}
    for f, col in zip(layout.fields, transposed, strict=True):
        out[f] = np.asarray(col, dtype=object if f == layout.name_field else None)
    return out


# -- column checks ---------------------------------------------------------------------------


def _first_bad(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _int_column(arr: np.ndarray, key: KeyColumn, layout: BatchLayout) -> np.ndarray:
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "O" and all(
            isinstance(x, int | np.integer) and not isinstance(x, bool) for x in arr.tolist()
        ):
            arr = arr.astype(np.int64)
        else:
            bad = _first_non(arr, lambda x: isinstance(x, int | np.integer))
            raise InvalidInput(
                f"{layout.label} column {key.name!r} must hold integers, got dtype "
                f"{arr.dtype}{bad}; cast it, e.g. .astype('int64')"
            )
    arr = arr.astype(np.int64, copy=False)
    out_of_range = (arr < key.lo) | (arr > key.hi)
    if len(arr) and out_of_range.any():
        i = _first_bad(out_of_range)
        raise InvalidInput(
            f"{layout.label} column {key.name!r} must be between {key.lo} and {key.hi}; "
            f"record {i} has {int(arr[i])}"
        )
    return arr


def _first_non(arr: np.ndarray, ok: Any) -> str:
    for i, x in enumerate(arr.tolist()):
        if not ok(x) or isinstance(x, bool):
            return f" (record {i} is {type(x).__name__} {x!r})"
    return ""


def _value_column(arr: np.ndarray, layout: BatchLayout, keys: dict[str, np.ndarray]) -> np.ndarray:
    if arr.dtype.kind not in "fiu":
        bad = _first_non(arr, lambda x: isinstance(x, int | float | np.number))
        raise InvalidInput(f"{layout.label} column 'value' must hold numbers, got dtype {arr.dtype}{bad}")
    values = arr.astype(np.float64, copy=False)
    non_finite = ~np.isfinite(values)
    if len(values) and non_finite.any():
        i = _first_bad(non_finite)
        where = ", ".join(f"{k}={int(v[i])}" for k, v in keys.items() if k != "metric_id")
        raise InvalidInput(
            f"{layout.label} values must be finite; record {i} ({where}) is {values[i]} "
            f"({int(non_finite.sum())} non-finite in the batch). Nothing was written. Drop or "
            "replace non-finite values before writing; a diverged variant is recorded with "
            "finish_variants(..., status='failed', error=...)"
        )
    return values


def _name_codes(arr: np.ndarray, layout: BatchLayout, n: int) -> tuple[list[str], np.ndarray]:
    if arr.strides == (0,):  # one name broadcast over the batch (a scalar in the mapping)
        name = check_metric_name(_as_name(arr[0], layout, 0), layout.name_field)
        return [name], np.zeros(n, dtype=np.int64)
    if arr.dtype.kind == "O":
        for i, x in enumerate(arr.tolist()):
            _as_name(x, layout, i)
        arr = arr.astype(str)
    elif arr.dtype.kind != "U":
        raise InvalidInput(f"{layout.label} column {layout.name_field!r} must hold strings, got {arr.dtype}")
    names, codes = np.unique(arr, return_inverse=True)
    checked = [check_metric_name(str(x), layout.name_field) for x in names.tolist()]
    return checked, codes.astype(np.int64).reshape(-1)


def _as_name(x: Any, layout: BatchLayout, i: int) -> str:
    if not isinstance(x, str | np.str_):
        raise InvalidInput(
            f"{layout.label} column {layout.name_field!r} must hold strings; record {i} is "
            f"{type(x).__name__} {x!r}"
        )
    return str(x)


# -- ordering and de-duplication -----------------------------------------------------------


def _sorted_unique_order(keys: dict[str, np.ndarray], layout: BatchLayout) -> np.ndarray | None:
    """Indexes that sort the batch by key and keep the last record of each duplicate key;
    ``None`` when the batch is already strictly sorted (the common case for a probe step)."""
    cols = [keys[k.name] for k in layout.keys]
    n = len(cols[0])
    if n < 2:
        return None
    packed = _pack_keys(cols)
    if packed is not None:
        if bool(np.all(packed[1:] > packed[:-1])):
            return None
        order = np.argsort(packed, kind="stable")
        sorted_key = packed[order]
        last = np.empty(n, dtype=bool)
        last[:-1] = sorted_key[1:] != sorted_key[:-1]
    else:
        order = np.lexsort(cols[::-1])  # stable: equal keys keep input order
        last = np.empty(n, dtype=bool)
        differs = np.zeros(n - 1, dtype=bool)
        for col in cols:
            c = col[order]
            differs |= c[1:] != c[:-1]
        last[:-1] = differs
    last[-1] = True
    return order[last]


def _pack_keys(cols: list[np.ndarray]) -> np.ndarray | None:
    """All key columns in one int64 (first column most significant) when they fit."""
    shifts: list[tuple[np.ndarray, int, int]] = []
    total = 0
    for col in cols:
        lo, hi = int(col.min()), int(col.max())
        bits = max((hi - lo).bit_length(), 1)
        shifts.append((col, lo, bits))
        total += bits
    if total > 62:
        return None
    packed = np.zeros(len(cols[0]), dtype=np.int64)
    for col, lo, bits in shifts:
        packed <<= bits
        packed |= col - lo
    return packed


def head_metric_grid(
    variant_ids: Sequence[int] | np.ndarray, step: int, metric: str, values: Any
) -> dict[str, Any]:
    """Columns for a probe's ``[variant, layer, head]`` tensor (numpy or CPU torch) at one
    step: ``store.write_head_metrics(head_metric_grid(ids, step, "entropy", ent))``."""
    grid = np.asarray(values, dtype=np.float64)
    if grid.ndim != 3:
        raise InvalidInput(f"values must be [variant, layer, head], got shape {grid.shape}")
    ids = np.asarray(variant_ids, dtype=np.int64)
    if ids.shape != (grid.shape[0],):
        raise InvalidInput(
            f"{len(ids)} variant ids for a grid of {grid.shape[0]} variants; pass one id per "
            "row of the leading axis"
        )
    v, n_layers, n_heads = grid.shape
    return {
        "variant_id": np.repeat(ids, n_layers * n_heads),
        "step": step,
        "layer": np.tile(np.repeat(np.arange(n_layers), n_heads), v),
        "head": np.tile(np.arange(n_heads), v * n_layers),
        "metric": metric,
        "value": grid.reshape(-1),
    }
