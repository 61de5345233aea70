"""oneDNN off: convolutions that round the same whatever the batch, to check batch logic exactly.

oneDNN's kernels round differently for a batch than for one image, and a dream amplifies
rounding (see test_batch.py), so comparisons of batched with lone dreams switch it off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def without_onednn() -> Iterator[None]:
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before
