"""Numba kernels: ranking the non-zero genes of each cell (CSR rows) by descending expression, and joining
ranked gene names into sentence bytes."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_TOP = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)
_SIGN = np.uint32(0x80000000)
_EXP = np.uint32(0x7F800000)
SKIP = np.uint32(0xFFFFFFFF)  # the priority of a gene left out of sentences


NONE = np.uint64(0xFFFFFFFFFFFFFFFF)  # an empty slot of a row of keys (sorts last)


@njit(cache=True, nogil=True)
def row_keys(indptr, indices, bits, priority, out, bad):  # pragma: no cover - jitted
    """Each row's sort keys into ``out`` (n, >= longest row), padded with NONE.

    ``bits`` are the uint32 patterns of float32 values; for positive floats they are monotone in the value.
    Each positive entry becomes one uint64 key ``(~bits << 32) | priority``, so sorting the keys orders by value
    (descending) then tie priority (ascending). Zeros and genes of priority ``SKIP`` are skipped; negative, NaN
    or infinite entries are counted in ``bad[row]`` and skipped. Runs without the GIL, so threads can fill
    blocks of rows side by side.
    """
    for i in range(indptr.size - 1):
        m = 0
        nbad = 0
        for j in range(indptr[i], indptr[i + 1]):
            b = bits[j]
            p = priority[indices[j]]
            if b == 0 or p == SKIP:
                continue
            if b >= _SIGN or (b & _EXP) == _EXP:
                if (b & np.uint32(0x7FFFFFFF)) != 0:  # -0.0 is a zero, anything else negative or non-finite is bad
                    nbad += 1
                continue
            out[i, m] = ((_TOP - np.uint64(b)) << _SHIFT) | np.uint64(p)
            m += 1
        out[i, m:] = NONE
        bad[i] = nbad


@njit(cache=True, nogil=True)
def decode_keys(keys, inv_priority, out_idx, out_bits):  # pragma: no cover - jitted
    """Sorted keys (n, any width) -> gene indices and value bits of the first K, padded with -1 / 0."""
    width = keys.shape[1]
    for i in range(keys.shape[0]):
        for r in range(out_idx.shape[1]):
            key = keys[i, r] if r < width else NONE
            if key == NONE:
                out_idx[i, r] = -1
                out_bits[i, r] = 0
            else:
                out_idx[i, r] = inv_priority[np.int64(key & _TOP)]
                out_bits[i, r] = np.uint32(_TOP - (key >> _SHIFT))


@njit(parallel=True, cache=True, nogil=True)
def row_sizes(idx, name_sizes, out):  # pragma: no cover - jitted
    """Bytes of each row's sentence: its genes' names, a space between two, a newline after it."""
    for i in prange(idx.shape[0]):
        size = 0
        for r in range(idx.shape[1]):
            g = idx[i, r]
            if g < 0:
                break
            size += name_sizes[g] + 1
        out[i] = max(size, 1)


@njit(parallel=True, cache=True, nogil=True)
def join_rows(idx, name_bytes, name_starts, row_starts, out):  # pragma: no cover - jitted
    """Write row ``i``'s gene names (``idx[i]``, -1 ends a row), space-separated and ended by a newline, at
    ``out[row_starts[i]:row_starts[i + 1]]``. Gene ``g``'s name is ``name_bytes[name_starts[g]:name_starts[g + 1]]``."""
    for i in prange(idx.shape[0]):
        pos = row_starts[i]
        for r in range(idx.shape[1]):
            g = idx[i, r]
            if g < 0:
                break
            if r:
                out[pos] = 32
                pos += 1
            for b in range(name_starts[g], name_starts[g + 1]):
                out[pos] = name_bytes[b]
                pos += 1
        out[row_starts[i + 1] - 1] = 10
