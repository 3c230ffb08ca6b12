"""SPM12's high-pass filter (``spm_filter.m``, ``spm_dctmtx.m``).

Each session's drifts are the discrete cosine set ``X0`` = columns 2..n of
``spm_dctmtx(k, n)`` with ``n = fix(2 * k * TR / cutoff + 1)``. The filter is residual
forming, ``K y = y - X0 (X0' y)`` per session, applied to data and design alike; the
cosines are not columns of the design.
"""

from __future__ import annotations

import numpy as np

__all__ = ["apply_high_pass", "dct_high_pass_basis"]


def dct_high_pass_basis(n_scans: int, tr_s: float, cutoff_s: float) -> np.ndarray:
    """SPM's DCT drift basis ``xX.K(s).X0`` of one session.

    Parameters
    ----------
    n_scans : int
        Scans of the session (``k``).
    tr_s : float
        Repetition time in seconds.
    cutoff_s : float
        High-pass cut-off period in seconds (SPM's ``HParam``, default 128).

    Returns
    -------
    numpy.ndarray
        ``(n_scans, n - 1)`` orthonormal cosines ``sqrt(2/k) cos(pi (2t+1) j / (2k))``,
        ``j = 1..n-1``.
    """
    n_columns = int(np.fix(2.0 * n_scans * tr_s / cutoff_s + 1.0))
    scans = np.arange(n_scans)[:, None]
    orders = np.arange(1, n_columns)[None, :]
    return np.sqrt(2.0 / n_scans) * np.cos(np.pi * (2 * scans + 1) * orders / (2.0 * n_scans))


def apply_high_pass(
    values: np.ndarray,
    session_rows: tuple[np.ndarray, ...],
    bases: tuple[np.ndarray, ...],
    in_place: bool = False,
) -> np.ndarray:
    """Residual-form each session's rows against its drift basis, ``y - X0 (X0' y)``.

    Parameters
    ----------
    values : numpy.ndarray
        ``(total scans, m)`` data or design.
    session_rows : tuple of numpy.ndarray
        Row indices of each session.
    bases : tuple of numpy.ndarray
        Each session's ``X0`` (``dct_high_pass_basis``).
    in_place : bool
        Filter ``values`` (a float64 array) itself rather than a copy.

    Returns
    -------
    numpy.ndarray
        The filtered values (float64).
    """
    filtered = values if in_place else np.array(values, dtype=float, copy=True)
    for rows, basis in zip(session_rows, bases, strict=True):
        block = filtered[rows]
        filtered[rows] = block - basis @ (basis.T @ block)
    return filtered
