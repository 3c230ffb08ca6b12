"""Slow-drift regressors (without the constant, which the design matrix appends last)."""

from __future__ import annotations

import numpy as np

from bids_glm.design.regressors import checked_frame_times, orthogonalise_columns


def cosine_drift(high_pass_hz: float, frame_times_s: np.ndarray) -> np.ndarray:
    """Return the DCT-II drift basis of a cosine high-pass filter.

    With ``n`` frames and mean frame interval ``dt``, there are
    ``K = floor(2 * n * high_pass_hz * dt)`` columns
    ``sqrt(2 / n) * cos(pi / n * (i + 0.5) * k)`` for ``k = 1..K`` and frame index ``i``.

    Parameters
    ----------
    high_pass_hz : float
        Cut-off frequency in Hz (>= 0, below the Nyquist frequency ``1 / (2 dt)``).
    frame_times_s : numpy.ndarray
        Strictly increasing frame times in seconds.

    Returns
    -------
    numpy.ndarray
        Array of shape (n, K); no constant column.
    """
    times = checked_frame_times(frame_times_s)
    if not (np.isfinite(high_pass_hz) and high_pass_hz >= 0):
        raise ValueError(f"high_pass_hz must be a finite frequency >= 0 Hz, got {high_pass_hz!r}")
    n_frames = times.size
    dt_s = (times[-1] - times[0]) / (n_frames - 1)
    n_cosines = int(np.floor(2 * n_frames * high_pass_hz * dt_s))
    if n_cosines > n_frames - 1:
        raise ValueError(
            f"high_pass_hz={high_pass_hz} Hz asks for {n_cosines} cosine drift columns but "
            f"{n_frames} frames leave room for at most {n_frames - 1} besides the constant; "
            f"use a cut-off below the Nyquist frequency {1 / (2 * dt_s):.6g} Hz"
        )
    frame_index = np.arange(n_frames)[:, np.newaxis]
    order = np.arange(1, n_cosines + 1)[np.newaxis, :]
    return np.sqrt(2.0 / n_frames) * np.cos((np.pi / n_frames) * (frame_index + 0.5) * order)


def polynomial_drift(order: int, frame_times_s: np.ndarray) -> np.ndarray:
    """Return polynomial drifts of degree 1..order, orthogonalised against lower degrees.

    Monomials ``(t / t_max) ** k`` for ``k = 0..order`` are orthogonalised serially
    (Gram-Schmidt, unnormalised); the degree-0 column (the constant) is dropped.

    Parameters
    ----------
    order : int
        Highest polynomial degree (>= 0).
    frame_times_s : numpy.ndarray
        Strictly increasing frame times in seconds, the last one > 0.

    Returns
    -------
    numpy.ndarray
        Array of shape (n, order); no constant column.
    """
    times = checked_frame_times(frame_times_s)
    if int(order) != order or order < 0:
        raise ValueError(f"polynomial drift order must be an integer >= 0, got {order!r}")
    if order > times.size - 1:
        raise ValueError(
            f"polynomial drift order {order} needs more than {times.size} frames "
            f"(at most order {times.size - 1})"
        )
    t_max = float(times.max())
    if t_max <= 0:
        raise ValueError(f"polynomial drift needs a last frame time > 0 s, got {t_max} s")
    monomials = (times[:, np.newaxis] / t_max) ** np.arange(int(order) + 1)[np.newaxis, :]
    return orthogonalise_columns(monomials)[:, 1:]
