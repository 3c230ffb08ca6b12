"""Condition regressors: boxcars on an oversampled grid, convolved, sampled at frame times.

The grid, boxcar and resampling conventions follow nilearn 0.14 so that regressors agree
with ``make_first_level_design_matrix`` to rounding error:

* the grid runs from ``frame_times[0] + min_onset_s`` to ``frame_times[-1] * n / (n - 1)``
  with ``oversampling`` samples per (mean) frame interval;
* an event rises at the first grid sample >= its onset and falls at the first sample
  >= its offset (one sample later for zero-duration events), both clipped to the grid;
* the boxcar is convolved with each kernel (overlap-add FFT, truncated to the grid) and linearly
  interpolated at the frame times; FIR columns are read ``oversampling - 1`` samples later.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import fft

from bids_glm.design.hrf import basis_suffixes, hrf_kernels
from bids_glm.design.hrf_spec import HrfSpec


def checked_frame_times(frame_times_s: np.ndarray) -> np.ndarray:
    """Validate frame times: 1-D, finite, at least two, strictly increasing.

    Parameters
    ----------
    frame_times_s : array-like
        Acquisition time of each frame in seconds.

    Returns
    -------
    numpy.ndarray
        The frame times as a float64 array.
    """
    times = np.asarray(frame_times_s, dtype=float)
    if times.ndim != 1 or times.size < 2:
        raise ValueError(
            f"frame_times_s must be a 1-D array of at least 2 times, got shape {times.shape}"
        )
    if not np.all(np.isfinite(times)):
        raise ValueError("frame_times_s must be finite (got NaN or infinite values)")
    steps = np.diff(times)
    if np.any(steps <= 0):
        first = int(np.argmax(steps <= 0))
        raise ValueError(
            "frame_times_s must be strictly increasing; "
            f"frame {first + 1} ({times[first + 1]} s) follows {times[first]} s"
        )
    return times


def orthogonalise_columns(matrix: np.ndarray) -> np.ndarray:
    """Orthogonalise each column against all preceding ones (serial Gram-Schmidt).

    Columns keep their norm-free residual form (not normalised), as SPM and nilearn do.

    Parameters
    ----------
    matrix : numpy.ndarray
        Array of shape (n, k).

    Returns
    -------
    numpy.ndarray
        A new (n, k) array whose column j is column j minus its least-squares
        projection on columns 0..j-1 of the result.
    """
    result = np.array(matrix, dtype=float, copy=True)
    for j in range(1, result.shape[1]):
        previous = result[:, :j]
        coefficients = np.linalg.lstsq(previous, result[:, j], rcond=None)[0]
        result[:, j] -= previous @ coefficients
    return result


def causal_convolution(signal: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``np.convolve(signal, kernel)[:signal.size]`` computed with real FFTs.

    Parameters
    ----------
    signal, kernel : ndarray, 1-D
        Samples on the same time grid.

    Returns
    -------
    ndarray
        The first ``signal.size`` samples of the full linear convolution.
    """
    size = fft.next_fast_len(signal.size + kernel.size - 1, real=True)
    spectrum = fft.rfft(signal, size) * fft.rfft(kernel, size)
    return fft.irfft(spectrum, size)[: signal.size]


def oversampled_grid(
    frame_times_s: np.ndarray, oversampling: int = 50, min_onset_s: float = -24.0
) -> np.ndarray:
    """Return the high-resolution time grid on which boxcars are built and convolved.

    Parameters
    ----------
    frame_times_s : numpy.ndarray
        Strictly increasing frame times in seconds.
    oversampling : int, default=50
        Grid samples per mean frame interval.
    min_onset_s : float, default=-24.0
        Start of the grid relative to the first frame, in seconds (<= 0).

    Returns
    -------
    numpy.ndarray
        Evenly spaced grid times in seconds.
    """
    times = checked_frame_times(frame_times_s)
    if not min_onset_s <= 0:
        raise ValueError(f"min_onset_s must be <= 0 seconds, got {min_onset_s!r}")
    n_frames = times.size
    first, last = times.min(), times.max()
    end = last * (1 + 1.0 / (n_frames - 1))
    samples_per_second = (n_frames - 1) * 1.0 / (last - first)
    # nilearn's order of operations: the count can sit on a rounding tie (4051.5), where a
    # different order rounds to a grid one sample longer and shifts every onset
    n_samples = samples_per_second * ((end - first - float(min_onset_s)) * oversampling) + 1
    return np.linspace(first + float(min_onset_s), end, int(np.rint(n_samples)))


def boxcar_on_grid(
    grid_s: np.ndarray, onsets_s: np.ndarray, durations_s: np.ndarray, amplitudes: np.ndarray
) -> np.ndarray:
    """Sum amplitude-weighted boxcars of all events on the grid.

    Parameters
    ----------
    grid_s : numpy.ndarray
        Increasing grid times in seconds.
    onsets_s, durations_s, amplitudes : numpy.ndarray
        One entry per event. Duplicate events add up (the model is linear).

    Returns
    -------
    numpy.ndarray
        The stimulus function on the grid.
    """
    last = grid_s.size - 1
    rise = np.minimum(np.searchsorted(grid_s, onsets_s), last)
    fall = np.minimum(np.searchsorted(grid_s, onsets_s + durations_s), last)
    fall = np.where((fall == rise) & (fall < last), fall + 1, fall)
    steps = np.zeros(grid_s.size)
    np.add.at(steps, rise, amplitudes)
    np.subtract.at(steps, fall, amplitudes)
    return np.cumsum(steps)


def condition_regressors(
    onsets_s,
    durations_s,
    amplitudes,
    *,
    hrf_model: HrfSpec,
    frame_times_s: np.ndarray,
    oversampling: int = 50,
    fir_delays: Sequence[int] | None = None,
    min_onset_s: float = -24.0,
) -> tuple[np.ndarray, list[str]]:
    """Build the regressors of one condition, sampled at the frame times.

    Parameters
    ----------
    onsets_s, durations_s, amplitudes : array-like
        Event onsets (s), durations (s, >= 0) and amplitudes, one entry per event.
    hrf_model : HrfSpec
        The HRF model.
    frame_times_s : numpy.ndarray
        Strictly increasing frame times in seconds.
    oversampling : int, default=50
        Grid samples per frame interval.
    fir_delays : sequence of int or None
        FIR delays in scans (default ``[0]``); used by ``"fir"`` only.
    min_onset_s : float, default=-24.0
        Grid start relative to the first frame; events starting earlier are clipped
        to the grid start (with a warning).

    Returns
    -------
    regressors : numpy.ndarray
        Array of shape (n_frames, k); derivative and dispersion columns are
        orthogonalised against the preceding ones (FIR columns are not).
    suffixes : list of str
        Column-name suffixes: ``""``, ``"_derivative"``, ``"_dispersion"``, ``"_delay_<d>"``.
    """
    times = checked_frame_times(frame_times_s)
    onsets, durations, amplitude_values = _checked_events(onsets_s, durations_s, amplitudes)
    oversampling = int(oversampling)
    grid = oversampled_grid(times, oversampling, min_onset_s)
    if np.any(onsets < times[0] + min_onset_s):
        warnings.warn(
            f"Some events start before {times[0] + min_onset_s} s (min_onset_s before the "
            "first frame); they are modelled as starting at that time.",
            UserWarning,
            stacklevel=2,
        )
    stimulus = boxcar_on_grid(grid, onsets, durations, amplitude_values)
    tr_s = float(np.min(np.diff(times)))
    kernels = hrf_kernels(hrf_model, tr_s, oversampling, fir_delays=fir_delays)
    convolved = [causal_convolution(stimulus, kernel) for kernel in kernels]
    fir = hrf_model.base == "fir"
    lag = oversampling - 1 if fir else 0
    sample_times = grid[: grid.size - lag]
    regressors = np.column_stack([np.interp(times, sample_times, c[lag:]) for c in convolved])
    if not fir:
        regressors = orthogonalise_columns(regressors)
    return regressors, basis_suffixes(hrf_model, fir_delays)


def _checked_events(onsets_s, durations_s, amplitudes) -> tuple[np.ndarray, ...]:
    arrays = [
        np.atleast_1d(np.asarray(v, dtype=float)) for v in (onsets_s, durations_s, amplitudes)
    ]
    lengths = [a.size for a in arrays]
    if len(set(lengths)) != 1 or any(a.ndim != 1 for a in arrays):
        raise ValueError(
            "onsets_s, durations_s and amplitudes must be 1-D of equal length, got lengths "
            f"{lengths[0]}, {lengths[1]} and {lengths[2]}"
        )
    for label, values in zip(("onsets_s", "durations_s", "amplitudes"), arrays, strict=True):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{label} must be finite (got NaN or infinite values)")
    if np.any(arrays[1] < 0):
        raise ValueError(f"durations_s must be >= 0 seconds, got {arrays[1].min()}")
    return tuple(arrays)
