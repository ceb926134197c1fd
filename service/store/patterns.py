"""Attention patterns kept for cross-run head matching: one row per variant, its last probe.

Patterns are stored as float16, zlib-compressed (a 2-layer, 4-head model on 8 examples of
64 tokens is 256 KiB raw, about half of that compressed). float16 keeps ~3 significant digits,
far below what moves a JS distance that matters. A write at an earlier step than the stored
one changes nothing (a retried pack re-probes old steps), so the row always holds the last
probe, and writing the same probe twice is a no-op.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
from sqlalchemy import select

from service.store.base import StoreBase, chunks
from service.store.entities import HeadPatterns
from service.store.errors import InvalidInput
from service.store.models import BATCH_KEY_LEN, HeadPatternsRow
from service.store.validation import check_id, check_ids, check_int, check_str

MAX_PATTERN_BYTES = 64 * 2**20  # raw float16 bytes of one row


def _encode(patterns: np.ndarray) -> tuple[list[int], bytes]:
    array = np.asarray(patterns)
    if array.ndim != 5:
        raise InvalidInput(f"patterns must be [B, L, H, Q, K], got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InvalidInput("patterns contain NaN or inf; attention rows must be finite")
    half = np.ascontiguousarray(array, dtype=np.float16)
    if half.nbytes > MAX_PATTERN_BYTES:
        raise InvalidInput(
            f"patterns of shape {array.shape} are {half.nbytes} bytes as float16, over "
            f"{MAX_PATTERN_BYTES}; keep fewer examples (probe.pattern_examples)"
        )
    return [int(n) for n in array.shape], zlib.compress(half.tobytes(), level=1)


def _decode(row: HeadPatternsRow) -> HeadPatterns:
    raw = np.frombuffer(zlib.decompress(row.data), dtype=np.float16)
    patterns = raw.reshape(row.shape).astype(np.float32)
    return HeadPatterns(variant_id=row.variant_id, step=row.step, batch_key=row.batch_key, patterns=patterns)


class PatternsMixin(StoreBase):
    def write_head_patterns(self, variant_id: int, step: int, batch_key: str, patterns: np.ndarray) -> bool:
        """Keep ``patterns [B, L, H, Q, K]`` as the variant's patterns at ``step`` unless a
        later step is already stored. True when the row changed."""
        variant_id = check_id(variant_id, "variant_id")
        step = check_int(step, "step")
        batch_key = check_str(batch_key, "batch_key", BATCH_KEY_LEN)
        shape, data = _encode(patterns)
        with self._session(write=True) as session:
            self._require_variants(session, [variant_id])
            row = session.get(HeadPatternsRow, variant_id, with_for_update=True)
            if row is None:
                session.add(HeadPatternsRow(variant_id=variant_id, step=step, batch_key=batch_key,
                                            shape=shape, data=data))
                return True
            if row.step > step or (row.step == step and row.data == data and row.batch_key == batch_key):
                return False
            row.step, row.batch_key, row.shape, row.data = step, batch_key, shape, data
            return True

    def read_head_patterns(self, variant_ids: Sequence[int]) -> dict[int, HeadPatterns]:
        """Stored patterns of the given variants (variants without any are left out)."""
        ids = check_ids(variant_ids, "variant_ids")
        out: dict[int, HeadPatterns] = {}
        with self._session() as session:
            for chunk in chunks(ids):
                stmt = select(HeadPatternsRow).where(HeadPatternsRow.variant_id.in_(chunk))
                for row in session.scalars(stmt):
                    out[row.variant_id] = _decode(row)
        return out
