"""A small BIDS + fMRIPrep-like dataset with planted activations (``bids-glm-demo``).

The dataset is a task ``faces`` with conditions ``face``, ``house`` and ``scrambled``.

Signal model (per run; in-brain voxels only, as a ``(T, V)`` float32 array)::

    Y(t, v) = b(v) * (1 + d(t, v) + A * r_c(t) [v in the blob of c]) + e(t, v)

- brain: an ellipsoid with semi-axes 70 x 86 x 72 mm centred in the grid (about 227k voxels
  on the 2 mm MNI grid); the brain mask is exactly that ellipsoid. Baseline ``b`` varies
  smoothly from 800 to 1200; outside the brain, a static 20-50 level plus N(0, 2) noise.
- events: about one event per condition every 20 s, durations 1-3 s, jittered gaps,
  random order, ending 14 s before the run does.
- ``face`` and ``house`` are planted in two disjoint spheres (radius 3 voxels); ``scrambled``
  is a null condition. ``r_c`` is the condition's boxcar convolved with a unit-integral
  Glover double gamma (blocks plateau at 1), sampled at ``t = k * TR``
  (slice-time reference 0). ``A`` makes an isolated 2 s event peak at 2 % of baseline; a
  GLM with the Glover HRF and percent signal scaling estimates ``100 * A``
  (``amplitude_percent`` in the truth).
- drift ``d``: DCT-II cosines of frequency <= 0.005 Hz (at most 3) with independent
  per-voxel N(0, 1 %) weights: a 0.01 Hz cosine high-pass removes them exactly.
- noise ``e``: AR(1) per voxel, rho from 0.2 (left) to 0.4 (right), marginal standard
  deviation 1 % of baseline, independent across voxels.
- confounds (:mod:`bids_glm.demo.confounds`) are realistic but not injected into ``Y``.

Values are rounded to int16 and streamed volume by volume into a deterministic gzip
stream (zlib-ng, deterministic): the same parameters give byte-identical files. The raw BOLD
is a hard link to the preprocessed file (a copy where links are not supported).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bids_glm import __version__
from bids_glm.demo.files import write_dataset_files, write_json
from bids_glm.demo.runs import write_run
from bids_glm.demo.signal import (
    BLOB_RADIUS_VOX,
    BRAIN_SEMI_AXES_MM,
    GLOVER_PARAMETERS,
    PEAK_PERCENT_SIGNAL_CHANGE,
    REFERENCE_EVENT_DURATION_S,
    NoiseModel,
    blob_centres,
    brain_geometry,
    reference_amplitude,
    sphere_mask,
)

FORMAT_VERSION = 1
TASK = "faces"
TR_S = 2.0
SPACE = "MNI152NLin2009cAsym"
PLANTED_CONDITIONS = ("face", "house")
NULL_CONDITIONS = ("scrambled",)
CONDITIONS = (*PLANTED_CONDITIONS, *NULL_CONDITIONS)
NOISE = NoiseModel()
TRUTH_PATH = Path("code", "demo_truth.json")
LABEL_PATTERN = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class DemoSize:
    """Grid of a demo preset: shape (voxels), isotropic voxel size (mm), volumes per run."""

    shape: tuple[int, int, int]
    voxel_size_mm: float
    n_volumes: int


DEMO_SIZES = {
    "small": DemoSize((40, 48, 40), 4.0, 120),
    "fmriprep": DemoSize((97, 115, 97), 2.0, 200),
}


def mni_affine(shape: Sequence[int], voxel_size_mm: float) -> np.ndarray:
    """Return an MNI-like affine whose grid centre sits at (0, -18, 18) mm.

    For the 97 x 115 x 97 grid at 2 mm it equals the MNI152NLin2009cAsym ``res-2`` affine.
    """
    centre_mm = np.array([0.0, -18.0, 18.0])
    affine = np.diag([voxel_size_mm] * 3 + [1.0])
    affine[:3, 3] = centre_mm - voxel_size_mm * (np.asarray(shape, dtype=float) - 1.0) / 2.0
    return affine


def _labels(n: int, name: str, width: int) -> list[str]:
    """Return the labels ``1..n`` zero-padded to ``width`` digits."""
    if n < 1:
        raise ValueError(f"{name} must be at least 1, got {n}")
    return [f"{i:0{width}d}" for i in range(1, n + 1)]


def _demo_truth(
    size: str, n_subjects: int, n_runs: int, seed: int, sessions: Sequence[str]
) -> dict:
    """Return the truth dictionary of a demo (everything but per-voxel maps)."""
    if size not in DEMO_SIZES:
        raise ValueError(f"size must be one of {sorted(DEMO_SIZES)}, got {size!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    for session in sessions:
        if not LABEL_PATTERN.fullmatch(session):
            raise ValueError(f"session labels must match [A-Za-z0-9]+, got {session!r}")
    preset = DEMO_SIZES[size]
    centres = blob_centres(preset.shape, preset.voxel_size_mm)
    amplitude_percent = 100.0 * reference_amplitude()
    truth = {
        "format_version": FORMAT_VERSION,
        "generator": f"bids-glm-demo {__version__}",
        "size": size,
        "seed": int(seed),
        "task": TASK,
        "tr_s": TR_S,
        "n_volumes": preset.n_volumes,
        "shape": list(preset.shape),
        "voxel_size_mm": preset.voxel_size_mm,
        "affine": mni_affine(preset.shape, preset.voxel_size_mm).tolist(),
        "space": SPACE,
        "subjects": _labels(n_subjects, "n_subjects", 2),
        "runs": _labels(n_runs, "n_runs", 1),
        "sessions": list(sessions),
        "conditions": list(CONDITIONS),
        "planted": {},
        "null_conditions": list(NULL_CONDITIONS),
        "slice_time_ref": 0.0,
        "hrf": {"model": "glover double gamma, unit integral", **GLOVER_PARAMETERS},
        "brain": {"semi_axes_mm": list(BRAIN_SEMI_AXES_MM), "n_voxels": None},
        "noise": asdict(NOISE),
    }
    for condition in PLANTED_CONDITIONS:
        truth["planted"][condition] = {
            "centre_ijk": centres[condition],
            "radius_vox": BLOB_RADIUS_VOX,
            "n_voxels": None,
            "peak_percent_signal_change": PEAK_PERCENT_SIGNAL_CHANGE,
            "reference_event_duration_s": REFERENCE_EVENT_DURATION_S,
            "amplitude_percent": amplitude_percent,
        }
        truth["planted"][condition]["n_voxels"] = int(planted_mask(truth, condition).sum())
    return truth


def planted_mask(truth: dict, condition: str) -> np.ndarray:
    """Return the boolean 3-D mask of a condition's planted blob.

    Parameters
    ----------
    truth : dict
        As returned by :func:`make_demo_dataset` (or read from ``code/demo_truth.json``).
    condition : str
        A planted condition (its blob) or a null condition (an all-False mask).

    Returns
    -------
    ndarray of bool, shape ``truth["shape"]``
    """
    shape = tuple(truth["shape"])
    if condition in truth["null_conditions"]:
        return np.zeros(shape, dtype=bool)
    if condition not in truth["planted"]:
        raise ValueError(
            f"condition {condition!r} is not in the demo; expected one of {truth['conditions']}"
        )
    blob = truth["planted"][condition]
    return sphere_mask(shape, blob["centre_ijk"], blob["radius_vox"])


def _reusable(bids_dir: Path, truth: dict) -> dict | None:
    """Return the stored truth if ``bids_dir`` holds a complete demo with these parameters."""
    if not bids_dir.exists() or not any(bids_dir.iterdir()):
        return None
    stored_path = bids_dir / TRUTH_PATH
    keys = ("format_version", "size", "seed", "subjects", "runs", "sessions")
    if stored_path.is_file():
        stored = json.loads(stored_path.read_text())
        if all(stored.get(key) == truth[key] for key in keys):
            return stored
        requested = {key: truth[key] for key in keys}
        found = {key: stored.get(key) for key in keys}
        raise FileExistsError(
            f"{bids_dir} holds a demo with other parameters ({found}); requested {requested}. "
            "Choose another directory or delete it."
        )
    raise FileExistsError(
        f"{bids_dir} exists and is not empty (and holds no complete demo: no {TRUTH_PATH}); "
        "choose another directory or delete it."
    )


def make_demo_dataset(
    bids_dir: Path,
    *,
    size: str = "small",
    n_subjects: int = 3,
    n_runs: int = 2,
    seed: int = 0,
    sessions: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Write a BIDS dataset with fMRIPrep-like derivatives and planted activations.

    Parameters
    ----------
    bids_dir : Path
        Created; must be absent or empty, unless it already holds a demo with the same
        parameters, which is then reused as is.
    size : {"small", "fmriprep"}
        Grid preset (:data:`DEMO_SIZES`).
    n_subjects, n_runs : int
        Subjects ``01, 02, ...`` and runs ``1, 2, ...`` (per session).
    seed : int
        Non-negative; the same seed gives byte-identical files.
    sessions : sequence of str
        Session labels; none means no session level.
    progress : callable, optional
        Called with one line of text per run written.

    Returns
    -------
    dict
        The truth, also written to ``code/demo_truth.json``.
    """
    bids_dir = Path(bids_dir)
    truth = _demo_truth(size, n_subjects, n_runs, seed, sessions)
    stored = _reusable(bids_dir, truth)
    if stored is not None:
        return stored
    preset = DEMO_SIZES[size]
    geometry = brain_geometry(preset.shape, preset.voxel_size_mm, NOISE)
    truth["brain"]["n_voxels"] = geometry.n_voxels
    blob_columns = {}
    for condition in PLANTED_CONDITIONS:
        flat = np.flatnonzero(planted_mask(truth, condition).ravel(order="F"))
        columns = np.searchsorted(geometry.brain_flat_index, flat)
        if not np.array_equal(geometry.brain_flat_index[columns], flat):
            raise ValueError(f"the {condition} blob reaches outside the brain ellipsoid")
        blob_columns[condition] = columns
    bids_dir.mkdir(parents=True, exist_ok=True)
    write_dataset_files(bids_dir, truth)
    session_labels = list(sessions) or [None]
    for i_sub, subject in enumerate(truth["subjects"]):
        for i_ses, session in enumerate(session_labels):
            for i_run, run in enumerate(truth["runs"]):
                rng = np.random.default_rng([seed, i_sub, i_ses, i_run])
                entities = {"sub": subject, "ses": session, "run": run}
                write_run(bids_dir, entities, rng, geometry, blob_columns, truth, NOISE)
                if progress is not None:
                    label = "_".join(f"{k}-{v}" for k, v in entities.items() if v is not None)
                    progress(f"  wrote {label}")
    truth = json.loads(json.dumps(truth))  # the value returned is the value written
    write_json(bids_dir / TRUTH_PATH, truth)
    return truth
