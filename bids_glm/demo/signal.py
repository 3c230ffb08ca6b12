"""Signal simulation for the demo dataset (see :mod:`bids_glm.demo.dataset` for the model).

Everything here is pure: geometry from the grid, events and BOLD from a seeded
``numpy.random.Generator``.  In-brain voxels are simulated as one ``(T, V_brain)``
float32 array; nothing 4-D is ever built.  Voxel order is the NIfTI (Fortran) order
of the flattened volume, so a volume is written by scattering one row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

#: Semi-axes of the ellipsoidal brain in mm (x, y, z): about 227k voxels on the 2 mm MNI grid.
BRAIN_SEMI_AXES_MM = (70.0, 86.0, 72.0)
#: Blob centres of the planted conditions, in units of the brain's semi-axes from its centre.
BLOB_OFFSETS = {"face": (-0.45, -0.5, -0.25), "house": (0.45, -0.5, -0.25)}
BLOB_RADIUS_VOX = 3.0
#: Peak signal change of an isolated event of ``REFERENCE_EVENT_DURATION_S``, % of baseline.
PEAK_PERCENT_SIGNAL_CHANGE = 2.0
REFERENCE_EVENT_DURATION_S = 2.0
#: Glover double gamma (peak 6 s, undershoot 12 s, dispersion 0.9 s, undershoot ratio 0.48).
GLOVER_PARAMETERS = {"peak_s": 6.0, "undershoot_s": 12.0, "dispersion_s": 0.9, "ratio": 0.48}
HRF_LENGTH_S = 32.0
HRF_DT_S = 0.02


@dataclass(frozen=True)
class NoiseModel:
    """Parameters of the simulated noise (all standard deviations relative to baseline)."""

    noise_std_percent: float = 1.0
    ar1_rho_range: tuple[float, float] = (0.2, 0.4)
    drift_std_percent: float = 1.0
    drift_max_frequency_hz: float = 0.005
    drift_max_components: int = 3
    baseline_range: tuple[float, float] = (800.0, 1200.0)
    background_range: tuple[float, float] = (20.0, 50.0)
    background_noise_std: float = 2.0


@dataclass(frozen=True)
class BrainGeometry:
    """In-brain voxels of the grid and their per-voxel simulation parameters.

    Attributes
    ----------
    shape : tuple of int
        Grid shape (X, Y, Z).
    brain_flat_index : ndarray of int64, shape (V,)
        Fortran-order flat indices of in-brain voxels, increasing.
    normalized_xyz : ndarray of float32, shape (V, 3)
        Voxel position relative to the brain centre in units of the semi-axes.
    baseline : ndarray of float32, shape (V,)
        Baseline intensity, smooth in space.
    ar1_rho : ndarray of float32, shape (V,)
        AR(1) coefficient of the noise, smooth in space.
    """

    shape: tuple[int, int, int]
    brain_flat_index: np.ndarray
    normalized_xyz: np.ndarray
    baseline: np.ndarray
    ar1_rho: np.ndarray

    @property
    def n_voxels(self) -> int:
        """Number of in-brain voxels."""
        return int(self.brain_flat_index.size)


def grid_centre(shape: Sequence[int]) -> np.ndarray:
    """Return the centre of a grid in voxel coordinates, ``(shape - 1) / 2``."""
    return (np.asarray(shape, dtype=float) - 1.0) / 2.0


def brain_semi_axes_vox(
    voxel_size_mm: float, semi_axes_mm: Sequence[float] = BRAIN_SEMI_AXES_MM
) -> np.ndarray:
    """Return the brain ellipsoid's semi-axes in voxels for a voxel size in mm."""
    return np.asarray(semi_axes_mm, dtype=float) / voxel_size_mm


def brain_geometry(
    shape: tuple[int, int, int],
    voxel_size_mm: float,
    noise: NoiseModel,
    semi_axes_mm: Sequence[float] = BRAIN_SEMI_AXES_MM,
) -> BrainGeometry:
    """Build the ellipsoidal brain of a grid with its baseline and AR(1) maps.

    Parameters
    ----------
    shape : tuple of int
        Grid shape (X, Y, Z).
    voxel_size_mm : float
        Isotropic voxel size in mm.
    noise : NoiseModel
        Gives the baseline range and the AR(1) coefficient range.
    semi_axes_mm : sequence of float, default=BRAIN_SEMI_AXES_MM
        Semi-axes (x, y, z) of the ellipsoidal brain in mm.

    Returns
    -------
    BrainGeometry
    """
    axes = [np.arange(n, dtype=np.float32) for n in shape]
    centre = grid_centre(shape)
    semi = brain_semi_axes_vox(voxel_size_mm, semi_axes_mm)
    if np.any(semi > centre + 0.5):
        raise ValueError(
            f"grid {shape} at {voxel_size_mm} mm is too small for the brain ellipsoid "
            f"(semi-axes {tuple(semi_axes_mm)} mm)"
        )
    grids = np.meshgrid(*axes, indexing="ij")
    normalized = [(g - c) / s for g, c, s in zip(grids, centre, semi, strict=True)]
    radius2 = sum(n**2 for n in normalized)
    inside_f = (radius2 <= 1.0).ravel(order="F")
    flat_index = np.flatnonzero(inside_f)
    xyz = np.stack([n.ravel(order="F")[flat_index] for n in normalized], axis=1)
    radius = np.sqrt(np.sum(xyz**2, axis=1))
    low, high = noise.baseline_range
    mid, half = (low + high) / 2.0, (high - low) / 2.0
    baseline = mid + half * (0.5 * np.cos(np.pi * radius) + 0.5 * xyz[:, 1])
    rho_low, rho_high = noise.ar1_rho_range
    rho = (rho_low + rho_high) / 2.0 + (rho_high - rho_low) / 2.0 * xyz[:, 0]
    return BrainGeometry(
        shape=tuple(int(n) for n in shape),
        brain_flat_index=flat_index.astype(np.int64),
        normalized_xyz=xyz.astype(np.float32),
        baseline=baseline.astype(np.float32),
        ar1_rho=rho.astype(np.float32),
    )


def blob_centres(shape: Sequence[int], voxel_size_mm: float) -> dict[str, list[int]]:
    """Return the voxel-index centre of each planted condition's blob."""
    centre = grid_centre(shape)
    semi = brain_semi_axes_vox(voxel_size_mm)
    return {
        condition: [int(v) for v in np.rint(centre + np.asarray(offset) * semi)]
        for condition, offset in BLOB_OFFSETS.items()
    }


def sphere_mask(
    shape: Sequence[int], centre_ijk: Sequence[float], radius_vox: float
) -> np.ndarray:
    """Return a boolean 3-D mask of the voxels within ``radius_vox`` of ``centre_ijk``."""
    if len(shape) != 3 or len(centre_ijk) != 3:
        raise ValueError(
            f"expected a 3-D shape and a 3-D centre, got shape {tuple(shape)} "
            f"and centre {tuple(centre_ijk)}"
        )
    grids = np.ogrid[tuple(slice(0, int(n)) for n in shape)]
    distance2 = sum((g - c) ** 2 for g, c in zip(grids, centre_ijk, strict=True))
    return np.asarray(distance2 <= radius_vox**2)


def glover_hrf(dt_s: float = HRF_DT_S, length_s: float = HRF_LENGTH_S) -> np.ndarray:
    """Return a Glover-like double-gamma HRF sampled every ``dt_s``, with unit integral.

    A block of height 1 convolved with it (times ``dt_s``) plateaus at 1, the scale a GLM
    regressor built with a unit-sum kernel has.
    """
    p = GLOVER_PARAMETERS
    d = p["dispersion_s"]
    t = np.arange(0.0, length_s, dt_s)
    hrf = stats.gamma.pdf(t, p["peak_s"] / d, scale=d) - p["ratio"] * stats.gamma.pdf(
        t, p["undershoot_s"] / d, scale=d
    )
    return hrf / (hrf.sum() * dt_s)


def event_regressor(
    onsets_s: np.ndarray, durations_s: np.ndarray, n_volumes: int, tr_s: float
) -> np.ndarray:
    """Return the HRF-convolved boxcar of a set of events at frame times ``k * tr_s``.

    Parameters
    ----------
    onsets_s, durations_s : ndarray, shape (n_events,)
        Event onsets and durations in seconds (onsets >= 0).
    n_volumes : int
        Number of frames.
    tr_s : float
        Repetition time in seconds.

    Returns
    -------
    ndarray of float64, shape (n_volumes,)
        Unit-height blocks reach 1 at their plateau.
    """
    dt = HRF_DT_S
    n_fine = round(n_volumes * tr_s / dt) + 1
    fine_t = np.arange(n_fine) * dt
    starts = np.searchsorted(fine_t, onsets_s - dt / 2)
    stops = np.searchsorted(fine_t, onsets_s + durations_s - dt / 2)
    steps = np.zeros(n_fine + 1)
    np.add.at(steps, starts, 1.0)
    np.add.at(steps, stops, -1.0)
    boxcar = np.cumsum(steps)[:n_fine]
    response = np.convolve(boxcar, glover_hrf(dt))[:n_fine] * dt
    return np.interp(np.arange(n_volumes) * tr_s, fine_t, response)


def reference_amplitude() -> float:
    """Return the regressor amplitude (fraction of baseline) of the planted response.

    It makes an isolated event of ``REFERENCE_EVENT_DURATION_S`` peak at
    ``PEAK_PERCENT_SIGNAL_CHANGE`` percent of baseline.
    """
    dt = HRF_DT_S
    n_box = round(REFERENCE_EVENT_DURATION_S / dt)
    peak = np.max(np.convolve(np.ones(n_box), glover_hrf(dt)) * dt)
    return PEAK_PERCENT_SIGNAL_CHANGE / 100.0 / float(peak)


def simulate_events(
    rng: np.random.Generator, conditions: Sequence[str], run_duration_s: float
) -> pd.DataFrame:
    """Draw a jittered, randomly ordered event list covering one run.

    About one event per condition every 20 s, durations 1-3 s, gaps 2-6 s before they
    are stretched so the last event ends 14 s before the run does.  Onsets, durations
    and response times are rounded to 10 ms (the values written are the values used).

    Returns
    -------
    DataFrame
        Columns ``onset``, ``duration``, ``trial_type``, ``response_time`` (NaN for
        the conditions that ask for no response: the last one in ``conditions``).
    """
    n_per_condition = max(2, round(run_duration_s / 20.0))
    trial_types = np.repeat(np.asarray(conditions), n_per_condition)
    rng.shuffle(trial_types)
    n_events = trial_types.size
    durations = np.round(rng.uniform(1.0, 3.0, n_events), 2)
    gaps = rng.uniform(2.0, 6.0, n_events - 1)
    first_onset = float(np.round(rng.uniform(2.0, 4.0), 2))
    available = run_duration_s - 14.0 - first_onset - durations.sum()
    if available <= n_events - 1:
        raise ValueError(f"a run of {run_duration_s} s is too short for {n_events} events")
    gaps *= available / gaps.sum()
    onsets = first_onset + np.concatenate([[0.0], np.cumsum(durations[:-1] + gaps)])
    onsets = np.floor(onsets * 100.0) / 100.0
    response = np.round(rng.uniform(0.45, 1.2, n_events), 3)
    response[trial_types == conditions[-1]] = np.nan
    return pd.DataFrame(
        {
            "onset": onsets,
            "duration": durations,
            "trial_type": trial_types.astype(object),
            "response_time": response,
        }
    )


def drift_basis(n_volumes: int, tr_s: float, noise: NoiseModel) -> np.ndarray:
    """Return slow cosines (columns, unit amplitude) with frequency <= the drift maximum.

    They are the DCT-II cosines ``cos(pi k (t + 0.5) / n)`` with ``k / (2 n TR)`` below
    ``noise.drift_max_frequency_hz``, so any cosine high-pass at a higher cutoff removes them.
    """
    duration_s = n_volumes * tr_s
    n_drifts = min(
        noise.drift_max_components, int(np.floor(2 * duration_s * noise.drift_max_frequency_hz))
    )
    frames = np.arange(n_volumes)[:, None] + 0.5
    orders = np.arange(1, n_drifts + 1)[None, :]
    return np.cos(np.pi * frames * orders / n_volumes)


def simulate_bold(
    rng: np.random.Generator,
    geometry: BrainGeometry,
    responses: Mapping[str, tuple[np.ndarray, np.ndarray]],
    tr_s: float,
    noise: NoiseModel,
) -> np.ndarray:
    """Simulate one run's in-brain time series.

    ``Y = baseline * (1 + drift + sum_c amplitude * r_c) + AR(1) noise``, with per-voxel
    drift weights and noise of standard deviation ``noise_std_percent`` % of baseline.

    Parameters
    ----------
    rng : numpy.random.Generator
    geometry : BrainGeometry
    responses : mapping
        Condition -> (column indices of its blob voxels, planted time course as a fraction
        of baseline, shape (T,)).
    tr_s : float
    noise : NoiseModel

    Returns
    -------
    ndarray of float32, shape (T, V)
    """
    n_volumes = next(iter(responses.values()))[1].size
    n_voxels = geometry.n_voxels
    drifts = drift_basis(n_volumes, tr_s, noise).astype(np.float32)
    weights = rng.standard_normal((drifts.shape[1], n_voxels), dtype=np.float32)
    weights *= noise.drift_std_percent / 100.0 / np.sqrt(max(drifts.shape[1], 1))
    bold = drifts @ weights
    bold += 1.0
    for columns, time_course in responses.values():
        bold[:, columns] += time_course.astype(np.float32)[:, None]
    bold *= geometry.baseline

    rho = geometry.ar1_rho
    innovation_scale = np.sqrt(1.0 - rho**2)
    noise_scale = geometry.baseline * np.float32(noise.noise_std_percent / 100.0)
    state = rng.standard_normal(n_voxels, dtype=np.float32)
    bold[0] += state * noise_scale
    for frame in bold[1:]:
        state *= rho
        state += innovation_scale * rng.standard_normal(n_voxels, dtype=np.float32)
        frame += state * noise_scale
    return bold
