"""Truncated-BPTT batching of one long token sequence, for character and word language models alike."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from .._checks import shape
from ..errors import UnrolledError


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UnrolledError(f"{name} must be a positive integer, got {value!r}")
    return value


class TBPTTStream:
    """Windows `(x, y)` of shape (B, L) over `batch_size` parallel streams of one long sequence of token ids.

    The N ids are cut into B = `batch_size` contiguous streams of S = N // B tokens each; the last N - B*S ids
    are dropped. Row b of `data` (B, S) is `ids[b*S : (b+1)*S]`. Window i takes positions [i*L, i*L + l) of
    every stream as input x and [i*L + 1, i*L + 1 + l) as target y, so y is x shifted one step along the
    stream: the windows tile positions 0 .. S-2 of each stream exactly, and the last token of a stream is only
    ever a target. l = L = `seq_len` except for the last window of an epoch, which keeps the remainder (it may
    be shorter; dropping it would hide text from training). `len(stream)` = ceil((S - 1) / L) windows.

    Each stream must hold at least L + 1 tokens (one full window plus its last target), so N >= B * (L + 1).

    Row b of window i+1 continues the text of row b of window i. Carrying the hidden state across windows,
    detaching it between them (that is what makes the BPTT truncated), and resetting it at the start of each
    epoch is the training loop's job. To resume mid-epoch, keep the index that `windows()` yields and call
    `windows(start=index + 1)`. The windows live on the device of `ids`.
    """

    def __init__(self, ids: Tensor, batch_size: int, seq_len: int):
        if not isinstance(ids, Tensor) or ids.dim() != 1:
            what = f"a tensor of shape {shape(ids)}" if isinstance(ids, Tensor) else type(ids).__name__
            raise UnrolledError(f"ids must be a 1-D tensor of token ids, got {what}")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise UnrolledError(f"ids must hold integer token ids, got dtype {ids.dtype}")
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.seq_len = _positive_int(seq_len, "seq_len")
        n, need = ids.shape[0], self.batch_size * (self.seq_len + 1)
        if n < need:
            raise UnrolledError(
                f"the corpus has {n} tokens, fewer than one batch window needs "
                f"(batch_size × (seq_len + 1) = {need}); use a smaller --batch-size or --seq-len"
            )
        self.stream_len = n // self.batch_size
        self.data = ids[: self.batch_size * self.stream_len].view(self.batch_size, self.stream_len).long()  # (B, S)

    def __len__(self) -> int:
        return -(-(self.stream_len - 1) // self.seq_len)

    @property
    def targets_per_epoch(self) -> int:
        """How many tokens are predicted in one epoch: B * (S - 1)."""
        return self.batch_size * (self.stream_len - 1)

    def window(self, index: int) -> tuple[Tensor, Tensor]:
        """Window `index` as (x, y), each (B, l) int64, with l = seq_len except perhaps for the last window."""
        if not 0 <= index < len(self):
            raise UnrolledError(f"window index must lie in [0, {len(self) - 1}], got {index}")
        start = index * self.seq_len
        stop = min(start + self.seq_len, self.stream_len - 1)
        return self.data[:, start:stop].contiguous(), self.data[:, start + 1 : stop + 1].contiguous()

    def windows(self, start: int = 0) -> Iterator[tuple[int, Tensor, Tensor]]:
        """(index, x, y) for windows start, start + 1, ... to the end of the epoch."""
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= len(self):
            raise UnrolledError(
                f"the window cursor must lie in [0, {len(self)}] for this corpus and batch shape, got {start!r}; "
                "was it saved with another corpus, --batch-size or --seq-len?"
            )
        # Checked here, not lazily at the first next(): a bad cursor should fail where it is passed in.
        return ((i, *self.window(i)) for i in range(start, len(self)))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for _, x, y in self.windows():
            yield x, y
