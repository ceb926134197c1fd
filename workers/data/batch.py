"""The one batch type every data family returns, and helpers to move and combine batches.

Conventions shared by every field:

- ``tokens[b, i]`` is the input at position ``i``; the model predicts ``tokens[b, i + 1]`` there.
- ``loss_mask[b, i]`` says whether token ``i`` counts as a *target* (predicted at ``i - 1``),
  the alignment of ``workers.model.token_losses``. Column 0 (BOS) is never a target and is
  False in generated masks. ``None`` means every target counts.
- ``label_pos[b]`` is the position the label is predicted *from*; the label token is at
  ``label_pos + 1``. So ``loss_mask[b, label_pos[b] + 1]`` is True for classification data.
- ``arcs[b, i] = j`` with ``j < i`` means position ``i`` should attend to its partner ``j``
  (verb -> subject, noun -> determiner, closing -> opening bracket, copied token -> its source);
  -1 where there is none.
- ``arc_kind[b, i]`` (optional extra) names the relation of ``arcs[b, i]`` as an index into
  :data:`ARC_KINDS`, -1 where there is no arc, so syntactic probes can report per relation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

# Numpy arrays named like Batch fields: what generators produce before one conversion.
Arrays = dict[str, np.ndarray]

# Index of each family in Batch.task. Append only: the index is stored with results.
TASK_NAMES: list[str] = [
    "repeated",
    "markov",
    "grammar",
    "copy",
    "reverse",
    "brackets",
    "bursty",
    "keyword",
    "languages",
    "text",
]
TASK_INDEX: dict[str, int] = {name: i for i, name in enumerate(TASK_NAMES)}

# Relation of each arc (Batch.arc_kind). Append only.
ARC_KINDS: list[str] = [
    "det",  # noun -> its determiner
    "subj",  # verb -> its subject noun (number agreement)
    "obj",  # object noun -> its verb
    "adj",  # noun <-> adjective (whichever comes later points back)
    "prep",  # preposition -> the noun it modifies
    "rel",  # relative pronoun -> the noun it modifies
    "copy",  # copied/reversed token -> its source position
    "bracket",  # closing bracket -> its opening bracket
]
ARC_KIND_INDEX: dict[str, int] = {name: i for i, name in enumerate(ARC_KINDS)}

# Fill values used when batches with and without a field are combined.
_FILL: dict[str, int | bool] = {
    "arcs": -1,
    "arc_kind": -1,
    "keyword_mask": False,
    "label_pos": -1,
    "language": -1,
}
_PER_POSITION = ("arcs", "keyword_mask", "loss_mask", "arc_kind")
_PER_SEQUENCE = ("label_pos", "language")


@dataclass(frozen=True)
class Batch:
    """Token sequences of one or more families plus the ground truth the probes need.

    Shapes are given for a plain batch; :func:`stack_batches` adds leading axes to all.
    """

    tokens: torch.Tensor  # [B, S] int64
    task: torch.Tensor  # [B] int64, index into TASK_NAMES
    arcs: torch.Tensor | None = None  # [B, S] int64, earlier partner position or -1
    keyword_mask: torch.Tensor | None = None  # [B, S] bool, True at keyword positions
    label_pos: torch.Tensor | None = None  # [B] int64, query position or -1
    language: torch.Tensor | None = None  # [B] int64, language id or -1
    loss_mask: torch.Tensor | None = None  # [B, S] bool, which target tokens count; None = all
    arc_kind: torch.Tensor | None = None  # [B, S] int64, index into ARC_KINDS or -1

    def __post_init__(self) -> None:
        lead = tuple(self.tokens.shape[:-1])
        if self.tokens.dtype != torch.int64 or self.tokens.dim() < 2:
            raise ValueError(f"tokens: need an int64 tensor [B, S], got {self.tokens.dtype} "
                             f"{tuple(self.tokens.shape)}")
        if tuple(self.task.shape) != lead:
            raise ValueError(f"task: shape {tuple(self.task.shape)} != {lead}")
        for name in _PER_POSITION:
            value = getattr(self, name)
            if value is not None and value.shape != self.tokens.shape:
                raise ValueError(f"{name}: shape {tuple(value.shape)} != tokens "
                                 f"{tuple(self.tokens.shape)}")
        for name in _PER_SEQUENCE:
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != lead:
                raise ValueError(f"{name}: shape {tuple(value.shape)} != {lead}")

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.tokens.shape[-1])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The same batch with every tensor on ``device``."""
        moved = {
            f.name: (v.to(device, non_blocking=non_blocking) if v is not None else None)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return Batch(**moved)  # type: ignore[arg-type]

    def select(self, index: torch.Tensor | slice) -> Batch:
        """Rows ``index`` of the batch (a slice, a bool mask or an index tensor)."""
        picked = {
            f.name: (v[index] if v is not None else None)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return Batch(**picked)  # type: ignore[arg-type]

    def of_task(self, name: str) -> Batch:
        """Only the sequences of family ``name``."""
        return self.select(self.task == TASK_INDEX[name])

    def full_loss_mask(self) -> torch.Tensor:
        """``loss_mask``, or the every-target mask it stands for when it is None."""
        if self.loss_mask is not None:
            return self.loss_mask
        mask = torch.ones_like(self.tokens, dtype=torch.bool)  # [B, S]
        mask[..., 0] = False
        return mask


def _filled(batch: Batch, name: str) -> torch.Tensor:
    value = getattr(batch, name)
    if value is not None:
        return value
    if name == "loss_mask":
        return batch.full_loss_mask()
    shape = batch.tokens.shape if name in _PER_POSITION else batch.task.shape
    dtype = torch.bool if isinstance(_FILL[name], bool) else torch.int64
    return torch.full(shape, _FILL[name], dtype=dtype, device=batch.tokens.device)


def _combine(batches: Sequence[Batch], op: str) -> Batch:
    if not batches:
        raise ValueError("batches: need at least one batch to combine")
    seq_lens = {b.seq_len for b in batches}
    if len(seq_lens) != 1:
        raise ValueError(f"batches: all must share seq_len, got {sorted(seq_lens)}")
    join = torch.cat if op == "cat" else torch.stack
    out: dict[str, torch.Tensor | None] = {}
    for f in fields(Batch):
        present = [getattr(b, f.name) is not None for b in batches]
        if not any(present):
            out[f.name] = None
        elif all(present):
            out[f.name] = join([getattr(b, f.name) for b in batches])
        else:
            out[f.name] = join([_filled(b, f.name) for b in batches])
    return Batch(**out)  # type: ignore[arg-type]


def concat_batches(batches: Sequence[Batch]) -> Batch:
    """Concatenate along the batch axis; a field absent from some batches is filled
    (-1 for indices, False for masks, the every-target mask for ``loss_mask``)."""
    if len(batches) == 1:
        return batches[0]
    return _combine(batches, "cat")


def stack_batches(batches: Sequence[Batch]) -> Batch:
    """Stack equal-sized batches on a new leading axis (e.g. one batch per variant of a pack):
    every tensor gains a leading ``[V]`` axis. Absent fields are filled as in concat."""
    sizes = {len(b) for b in batches}
    if len(sizes) > 1:
        raise ValueError(f"batches: stacking needs equal batch sizes, got {sorted(sizes)}")
    return _combine(batches, "stack")


def batch_from_arrays(arrays: Arrays) -> Batch:
    """One Batch from numpy arrays (int64 / bool), without copying."""
    return Batch(**{name: torch.from_numpy(np.ascontiguousarray(value))
                    for name, value in arrays.items()})


def concat_arrays(parts: Sequence[Arrays], n_positions: int) -> Arrays:
    """Numpy twin of :func:`concat_batches` (fills absent fields the same way)."""
    if len(parts) == 1:
        return dict(parts[0])
    out: Arrays = {}
    for name in {key for part in parts for key in part}:
        pieces = []
        for part in parts:
            if name in part:
                pieces.append(part[name])
                continue
            n = len(part["tokens"])
            fill: np.ndarray
            if name == "loss_mask":
                fill = np.ones((n, n_positions), dtype=np.bool_)
                fill[:, 0] = False
            elif name in _PER_POSITION:
                fill = np.full((n, n_positions), _FILL[name],
                               dtype=np.bool_ if name == "keyword_mask" else np.int64)
            else:
                fill = np.full(n, _FILL[name], dtype=np.int64)
            pieces.append(fill)
        out[name] = np.concatenate(pieces)
    return out
