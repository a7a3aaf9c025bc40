"""Numba kernel ranking the non-zero genes of each cell (CSR rows) by descending expression."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_TOP = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)
_SIGN = np.uint32(0x80000000)
_EXP = np.uint32(0x7F800000)


@njit(parallel=True, cache=True, nogil=True)
def rank_rows(indptr, indices, bits, priority, inv_priority, out_idx, out_bits, bad):  # pragma: no cover - jitted
    """Rank each row's entries by value (descending) then gene priority (ascending).

    ``bits`` are the uint32 patterns of float32 values; for positive floats they are monotone in the value.
    Each positive entry becomes one uint64 key ``(~bits << 32) | priority``, so one sort orders by value then
    tie priority; for top-K rows the K smallest keys are selected first in linear time. Zeros are skipped;
    negative, NaN or infinite entries are counted in ``bad[row]`` and skipped. Rows are written into
    ``out_idx``/``out_bits`` (n, K), padded with -1 / 0.
    """
    n = indptr.size - 1
    k_max = out_idx.shape[1]
    for i in prange(n):
        s = indptr[i]
        e = indptr[i + 1]
        keys = np.empty(e - s, np.uint64)
        m = 0
        nbad = 0
        for j in range(s, e):
            b = bits[j]
            if b == 0:
                continue
            if b >= _SIGN or (b & _EXP) == _EXP:
                if (b & np.uint32(0x7FFFFFFF)) != 0:  # -0.0 is a zero, anything else negative or non-finite is bad
                    nbad += 1
                continue
            keys[m] = ((_TOP - np.uint64(b)) << _SHIFT) | np.uint64(priority[indices[j]])
            m += 1
        bad[i] = nbad
        k = min(m, k_max)
        if k < m:
            keys = np.partition(keys[:m], k - 1)[:k]
        else:
            keys = keys[:m]
        keys.sort()
        for r in range(k):
            out_idx[i, r] = inv_priority[np.int64(keys[r] & _TOP)]
            out_bits[i, r] = np.uint32(_TOP - (keys[r] >> _SHIFT))
        for r in range(k, k_max):
            out_idx[i, r] = -1
            out_bits[i, r] = 0
