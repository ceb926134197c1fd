"""A plain local text file as data: its bytes are the tokens.

Each sequence is ``BOS`` then a window of ``seq_len - 1`` consecutive bytes starting at a
uniformly random offset; byte ``v`` is content token ``start + v``. The file is memory-mapped,
never loaded whole, and nothing is downloaded. Needs 256 content tokens (so ``vocab_size >=
260`` in the shared layout) and a file of at least ``seq_len - 1`` bytes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from workers.data.common import BOS, Arrays, FamilyGenerator, VocabSlice, config_error

N_BYTES = 256


@dataclass(frozen=True)
class TextKnobs:
    path: str | None = None  # set from DataConfig.text_path

    def __post_init__(self) -> None:
        if self.path is None:
            raise config_error("text_path", "the 'text' family needs a file",
                               "set text_path to a local text file")
        if not os.path.isfile(self.path):
            raise config_error("text_path", f"{self.path!r} is not a readable file",
                               "point text_path at an existing local file")


def file_digest(path: str) -> str:
    """sha256 of the file's bytes, so probe batches follow the content, not the path."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class TextGenerator(FamilyGenerator):
    name = "text"

    def __init__(self, knobs: TextKnobs, vocab: VocabSlice, seq_len: int,
                 structure_rng: np.random.Generator) -> None:
        super().__init__(vocab, seq_len)
        assert knobs.path is not None  # TextKnobs guarantees it
        self.need_vocab(N_BYTES, "nothing: bytes need 256 tokens")
        self.path = knobs.path
        size = os.path.getsize(knobs.path)
        if size < seq_len - 1:
            raise config_error("text_path", f"{knobs.path!r} has {size} bytes, fewer than "
                               f"seq_len - 1 = {seq_len - 1}",
                               "use a longer file or a shorter seq_len")
        self.data = np.memmap(knobs.path, dtype=np.uint8, mode="r")  # [file bytes]
        self._offsets = np.arange(seq_len - 1)  # [S-1]

    def sample_arrays(self, n: int, rng: np.random.Generator) -> Arrays:
        window = self.seq_len - 1
        starts = rng.integers(0, len(self.data) - window + 1, size=n)  # [n]
        windows = self.data[starts[:, None] + self._offsets[None, :]]  # [n, S-1] uint8
        tokens = np.empty((n, self.seq_len), dtype=np.int64)  # [n, S]
        tokens[:, 0] = BOS
        tokens[:, 1:] = windows.astype(np.int64) + self.vocab.start
        return {"tokens": tokens}
