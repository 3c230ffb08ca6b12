"""SPM12's microtime grid: stimulus functions (``spm_get_ons.m``) and their sampling.

A session of ``n_scans`` scans is modelled on ``n_scans * fmri_t + 32`` microtime bins of
``dt = TR / fmri_t`` seconds; bin ``b`` (0-based) is ``(b - 32) * dt`` seconds after the
first scan's acquisition start. An event at ``onset`` lasting ``duration`` seconds fills
``round(duration / dt) + 1`` bins from bin ``round(onset / dt) + 32`` at height 1 (or
``1 / dt`` when every duration of the condition is 0); overlapping events add. After
convolution, scan ``n`` reads bin ``n * fmri_t + fmri_t0 + 31``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MicrotimeGrid", "convolve_and_sample", "matlab_round", "stimulus_function"]

# spm_get_ons pads the grid with 32 bins before the first scan and allocates 128.
_LEAD_BINS = 32
_ALLOCATED_EXTRA_BINS = 128


@dataclass(frozen=True)
class MicrotimeGrid:
    """SPM's microtime resolution for one session.

    Attributes
    ----------
    tr_s : float
        Repetition time (``RT``) in seconds.
    fmri_t : int
        Microtime bins per scan (SPM default 16).
    fmri_t0 : int
        1-based bin at which each scan is sampled (SPM default 8).
    n_scans : int
        Scans of the session.
    """

    tr_s: float
    fmri_t: int
    fmri_t0: int
    n_scans: int

    @property
    def dt_s(self) -> float:
        """Microtime bin in seconds, ``TR / fmri_t``."""
        return self.tr_s / self.fmri_t

    @property
    def n_bins(self) -> int:
        """Bins of the stimulus function, ``n_scans * fmri_t + 32``."""
        return self.n_scans * self.fmri_t + _LEAD_BINS


def matlab_round(values: np.ndarray) -> np.ndarray:
    """Round halves away from zero, as MATLAB's ``round`` does (numpy rounds to even)."""
    values = np.asarray(values, dtype=float)
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def stimulus_function(
    grid: MicrotimeGrid, onsets_s: np.ndarray, durations_s: np.ndarray
) -> np.ndarray:
    """Build one condition's stimulus function on the microtime grid (``spm_get_ons``).

    Parameters
    ----------
    grid : MicrotimeGrid
        The session's grid.
    onsets_s, durations_s : numpy.ndarray
        Event onsets and durations in seconds from the session's first scan.

    Returns
    -------
    numpy.ndarray
        ``(grid.n_bins,)`` boxcars (or sticks of height ``1 / dt``).
    """
    onsets_s = np.asarray(onsets_s, dtype=float)
    durations_s = np.asarray(durations_s, dtype=float)
    height = 1.0 / grid.dt_s if not np.any(durations_s) else 1.0
    n_allocated = grid.n_scans * grid.fmri_t + _ALLOCATED_EXTRA_BINS
    starts = matlab_round(onsets_s / grid.dt_s).astype(int) + _LEAD_BINS
    stops = matlab_round(durations_s / grid.dt_s).astype(int) + starts + 1
    starts = np.maximum(starts, 0)
    stops = np.maximum(stops, 0)
    steps = np.zeros(n_allocated)
    inside = starts < n_allocated - 1
    np.add.at(steps, starts[inside], height)
    inside = stops < n_allocated - 1
    np.add.at(steps, stops[inside], -height)
    return np.cumsum(steps)[: grid.n_bins]


def convolve_and_sample(
    grid: MicrotimeGrid, stimulus: np.ndarray, basis: np.ndarray
) -> np.ndarray:
    """Convolve a stimulus function with each basis function and sample it at the scans.

    Parameters
    ----------
    grid : MicrotimeGrid
        The session's grid.
    stimulus : numpy.ndarray
        ``(grid.n_bins,)`` stimulus function.
    basis : numpy.ndarray
        ``(n_samples, n_basis)`` basis set sampled every ``dt``.

    Returns
    -------
    numpy.ndarray
        ``(n_scans, n_basis)`` regressors, row ``n`` read at bin ``n * fmri_t + fmri_t0 + 31``.
    """
    rows = np.arange(grid.n_scans) * grid.fmri_t + grid.fmri_t0 + _LEAD_BINS - 1
    columns = [np.convolve(stimulus, basis[:, k])[: grid.n_bins] for k in range(basis.shape[1])]
    return np.column_stack(columns)[rows]
