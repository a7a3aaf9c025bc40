"""Numba kernels for ranking the non-zero genes of each cell (CSR rows) by descending expression."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_TOP = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


@njit(parallel=True, cache=True, nogil=True)
def rank_rows(indptr, indices, bits, priority, inv_priority, out_idx, out_bits):  # pragma: no cover - jitted
    """Rank each row's entries by value (descending) then gene priority (ascending).

    ``bits`` are the uint32 patterns of positive float32 values (monotone in the value). Each entry becomes
    one uint64 key ``(~bits << 32) | priority``, so one sort per row orders by value then by tie priority.
    Rows are written into ``out_idx``/``out_bits`` (n, K), padded with -1 / 0 past the row's length.
    """
    n = indptr.size - 1
    k_max = out_idx.shape[1]
    for i in prange(n):
        s = indptr[i]
        m = indptr[i + 1] - s
        keys = np.empty(m, np.uint64)
        for j in range(m):
            keys[j] = ((_TOP - np.uint64(bits[s + j])) << _SHIFT) | np.uint64(priority[indices[s + j]])
        keys.sort()
        k = min(m, k_max)
        for r in range(k):
            out_idx[i, r] = inv_priority[np.int64(keys[r] & _TOP)]
            out_bits[i, r] = np.uint32(_TOP - (keys[r] >> _SHIFT))
        for r in range(k, k_max):
            out_idx[i, r] = -1
            out_bits[i, r] = 0
