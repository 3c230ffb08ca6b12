"""fMRIPrep-style confounds for the demo dataset.

Motion is a seeded random walk (with rare jerks); global signal, CSF and white-matter
means, DVARS and aCompCor (on at most 10 000 voxels of a central "CSF" ball and a
"white-matter" shell, planted blobs excluded) are computed from the simulated in-brain
data; cosines follow fMRIPrep's 128 s discrete cosine basis.  None of these is injected
into the BOLD, so an analysis without confounds stays valid.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bids_glm.demo.signal import BrainGeometry

MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
N_COMPCOR = 6
COSINE_PERIOD_S = 128.0
HEAD_RADIUS_MM = 50.0
#: Per-volume motion steps and initial offset: trans_x/y/z in mm, rot_x/y/z in radians.
MOTION_STEP_STD = np.array([0.02, 0.02, 0.03, 0.0003, 0.0003, 0.0002])
MOTION_OFFSET_STD = np.array([0.05, 0.05, 0.05, 0.0005, 0.0005, 0.0005])
JERK_PROBABILITY = 0.02
JERK_FACTOR = 10.0
CSF_MAX_RADIUS = 0.2
WHITE_MATTER_RADIUS_RANGE = (0.3, 0.6)
MAX_DVARS_VOXELS = 5000
MAX_COMPCOR_VOXELS = 10000


def tissue_columns(geometry: BrainGeometry, excluded: np.ndarray) -> dict[str, np.ndarray]:
    """Return in-brain column indices of the CSF (centre) and white-matter (shell) regions.

    ``excluded`` (column indices, e.g. planted blobs) is left out of both.
    """
    radius = np.sqrt(np.sum(geometry.normalized_xyz.astype(np.float64) ** 2, axis=1))
    keep = np.ones(geometry.n_voxels, dtype=bool)
    keep[excluded] = False
    low, high = WHITE_MATTER_RADIUS_RANGE
    return {
        "csf": np.flatnonzero(keep & (radius < CSF_MAX_RADIUS)),
        "white_matter": np.flatnonzero(keep & (radius >= low) & (radius <= high)),
    }


def fmriprep_cosines(n_volumes: int, tr_s: float) -> np.ndarray:
    """Return fMRIPrep's cosine regressors (128 s cutoff, constant excluded), (T, K)."""
    order = int(np.floor(2 * n_volumes * tr_s / COSINE_PERIOD_S))
    frames = np.arange(n_volumes)[:, None] + 0.5
    orders = np.arange(1, order)[None, :]
    return np.sqrt(2.0 / n_volumes) * np.cos(np.pi * frames * orders / n_volumes)


def random_walk_motion(rng: np.random.Generator, n_volumes: int) -> np.ndarray:
    """Return (T, 6) motion parameters: translations in mm, rotations in radians.

    A random walk from a small random offset, with rare ten-fold jerks.
    """
    steps = rng.standard_normal((n_volumes, 6)) * MOTION_STEP_STD
    steps[rng.random(n_volumes) < JERK_PROBABILITY] *= JERK_FACTOR
    steps[0] = rng.standard_normal(6) * MOTION_OFFSET_STD
    return np.cumsum(steps, axis=0)


def framewise_displacement(motion: np.ndarray) -> np.ndarray:
    """Return Power's framewise displacement (NaN in row 0), rotations on a 50 mm sphere."""
    delta = np.abs(np.diff(motion, axis=0))
    fd = delta[:, :3].sum(axis=1) + HEAD_RADIUS_MM * delta[:, 3:].sum(axis=1)
    return np.concatenate([[np.nan], fd])


def dvars(bold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return DVARS and standardized DVARS of a (T, V) array (NaN in row 0).

    The standardisation divides by the DVARS expected from each voxel's standard
    deviation and lag-1 autocorrelation (estimated on a voxel subsample).
    """
    n_volumes = bold.shape[0]
    rms = np.full(n_volumes, np.nan)
    for t in range(1, n_volumes):
        difference = bold[t] - bold[t - 1]
        rms[t] = np.sqrt(np.mean(difference.astype(np.float64) ** 2))
    stride = max(1, bold.shape[1] // MAX_DVARS_VOXELS)
    sample = bold[:, ::stride].astype(np.float64)
    sample -= sample.mean(axis=0)
    variance = np.mean(sample**2, axis=0)
    lag1 = np.mean(sample[1:] * sample[:-1], axis=0) / np.where(variance > 0, variance, 1.0)
    expected = np.sqrt(np.mean(2.0 * (1.0 - lag1) * variance))
    return rms, rms / expected


def acompcor(bold_columns: np.ndarray, tr_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Return aCompCor components and singular values of a (T, V_noise) array.

    Each voxel is high-pass filtered with the 128 s cosines (and mean), then scaled to
    unit variance; components are the left singular vectors (unit norm columns).
    """
    n_volumes = bold_columns.shape[0]
    basis = np.column_stack([fmriprep_cosines(n_volumes, tr_s), np.ones(n_volumes)])
    data = bold_columns.astype(np.float64)
    data -= basis @ np.linalg.lstsq(basis, data, rcond=None)[0]
    std = data.std(axis=0)
    data /= np.where(std > 0, std, 1.0)
    eigenvalues, eigenvectors = np.linalg.eigh(data @ data.T)
    order = np.argsort(eigenvalues)[::-1]
    singular_values = np.sqrt(np.clip(eigenvalues[order], 0.0, None))
    components = eigenvectors[:, order]
    signs = np.sign(components[np.argmax(np.abs(components), axis=0), np.arange(n_volumes)])
    return components * signs, singular_values


def confounds_table(
    rng: np.random.Generator,
    bold: np.ndarray,
    geometry: BrainGeometry,
    excluded_columns: np.ndarray,
    tr_s: float,
) -> tuple[pd.DataFrame, dict]:
    """Build an fMRIPrep-like confounds table and its JSON sidecar for one run.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the motion.
    bold : ndarray of float32, shape (T, V)
        The simulated in-brain time series.
    geometry : BrainGeometry
    excluded_columns : ndarray of int
        In-brain columns kept out of the tissue masks (the planted blobs).
    tr_s : float

    Returns
    -------
    table : DataFrame
        One row per volume; NaN (written ``n/a``) only in row 0 of derivative columns,
        ``framewise_displacement``, ``dvars`` and ``std_dvars``.
    sidecar : dict
        aCompCor metadata as fMRIPrep writes it.
    """
    n_volumes = bold.shape[0]
    tissues = tissue_columns(geometry, excluded_columns)
    columns: dict[str, np.ndarray] = {
        "global_signal": bold.mean(axis=1, dtype=np.float64),
        "csf": bold[:, tissues["csf"]].mean(axis=1, dtype=np.float64),
        "white_matter": bold[:, tissues["white_matter"]].mean(axis=1, dtype=np.float64),
    }
    columns["dvars"], columns["std_dvars"] = dvars(bold)
    motion = random_walk_motion(rng, n_volumes)
    columns["framewise_displacement"] = framewise_displacement(motion)
    for name, values in zip(MOTION_COLUMNS, motion.T, strict=True):
        columns[name] = values
        columns[f"{name}_derivative1"] = np.concatenate([[np.nan], np.diff(values)])

    noise_columns = np.sort(np.concatenate([tissues["csf"], tissues["white_matter"]]))
    stride = max(1, noise_columns.size // MAX_COMPCOR_VOXELS)
    components, singular_values = acompcor(bold[:, noise_columns[::stride]], tr_s)
    explained = singular_values**2 / np.sum(singular_values**2)
    cumulative = np.cumsum(explained)
    sidecar = {}
    for k in range(N_COMPCOR):
        name = f"a_comp_cor_{k:02d}"
        columns[name] = components[:, k]
        sidecar[name] = {
            "CumulativeVarianceExplained": float(cumulative[k]),
            "Mask": "combined",
            "Method": "aCompCor",
            "Retained": True,
            "SingularValue": float(singular_values[k]),
            "VarianceExplained": float(explained[k]),
        }
    for k, values in enumerate(fmriprep_cosines(n_volumes, tr_s).T):
        columns[f"cosine{k:02d}"] = values
    return pd.DataFrame(columns), sidecar
