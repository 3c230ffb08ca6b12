"""A FIAC-shaped demo (``bids-glm-demo OUTDIR --design fiac``): two runs, four conditions.

Shaped like the two runs of one FIAC subject that nilearn's "two-session fMRI model
fitting" example analyses (Dehaene-Lambertz et al., 2006): one subject, task ``fiac``,
two runs of 191 volumes at TR 2.5 s on a 64 x 64 x 30 grid of 3 mm voxels. The four
conditions are the cells of a 2 x 2 design, sentence x speaker, named (and ordered in
the designs) as in the example's column order::

    SSt  same sentence, same speaker         DSt  different sentence, same speaker
    SSp  same sentence, different speaker    DSp  different sentence, different speaker

so that the example's vectors mean what their names say: ``DSt_minus_SSt = [-1, -1, 1, 1]``
(different minus same sentence), ``DSp_minus_SSp = [-1, 1, -1, 1]`` (speaker), ...
Run 1 is a block design (blocks of six 2.5 s sentences of one condition, 20 s long,
separated by rest), run 2 is event related (jittered single sentences), as FIAC had both.

Planted effects (:data:`REGIONS`): spheres of radius 2.5 voxels whose response is a
weighted sum of the conditions' regressors (unit-integral Glover HRF, see
:mod:`bids_glm.demo.signal`); a weight of 1 is a plateau of ``UNIT_PERCENT`` % of
baseline. ``sentence`` responds more to different sentences (DSt + DSp > SSt + SSp),
``speaker`` more to different speakers (SSp + DSp > SSt + DSt), ``deactivation`` is
below baseline for every condition. Noise, drifts, background, confounds and files are
those of the default demo (:mod:`bids_glm.demo.dataset`): the same seed gives the same
bytes.

Beside the dataset, ``designs/`` holds one pre-computed design per run, named like
bids-glm's own ``_design.tsv`` and built with bids-glm's
:func:`~bids_glm.design.matrix.make_design_matrix` (Glover HRF, cosine drifts at
0.01 Hz, constant), columns reordered to ``SSt, SSp, DSt, DSp, drift_1..K, constant``:
what ``--design-dir`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bids_glm import __version__
from bids_glm.demo.dataset import mni_affine
from bids_glm.demo.fiac_contrasts import CONDITIONS, F_CONTRASTS, T_CONTRASTS
from bids_glm.demo.files import (
    write_derivatives_description,
    write_json,
    write_raw_description,
    write_tsv,
)
from bids_glm.demo.runs import write_run_files
from bids_glm.demo.signal import (
    GLOVER_PARAMETERS,
    NoiseModel,
    brain_geometry,
    event_regressor,
    grid_centre,
    simulate_bold,
    sphere_mask,
)
from bids_glm.derivatives import naming
from bids_glm.design.matrix import frame_times, make_design_matrix

FORMAT_VERSION = 1
DESIGN = "fiac"
TASK = "fiac"
SUBJECT = "01"
RUNS = ("1", "2")
RUN_KINDS = {"1": "block", "2": "event-related"}
TR_S = 2.5
N_VOLUMES = 191
SHAPE = (64, 64, 30)
VOXEL_SIZE_MM = 3.0
SPACE = "MNI152NLin2009cAsym"
#: Semi-axes of the ellipsoidal brain (mm): it must fit the 90 mm high field of view.
BRAIN_SEMI_AXES_MM = (70.0, 86.0, 40.0)
CONDITION_MEANINGS = {
    "SSt": "same sentence, same speaker",
    "SSp": "same sentence, different speaker",
    "DSt": "different sentence, same speaker",
    "DSp": "different sentence, different speaker",
}
#: Plateau of a weight-1 response, % of baseline.
UNIT_PERCENT = 1.5
REGION_RADIUS_VOX = 2.5
SENTENCE_S = 2.5  # duration of one sentence
BLOCK_SENTENCES = 6
BLOCK_SOA_S = 20.0 / 6.0  # six sentences fill a 20 s block
BLOCKS_PER_CONDITION = 3
EVENTS_PER_CONDITION = 16
FIRST_ONSET_S = (6.0, 10.0)
END_REST_S = 14.0
HIGH_PASS_HZ = 0.01
NOISE = NoiseModel()
TRUTH_PATH = Path("code", "demo_truth.json")
DESIGNS_FOLDER = "designs"


@dataclass(frozen=True)
class Region:
    """A planted region: centre (in units of the brain's semi-axes) and weights."""

    offset: tuple[float, float, float]
    weights: dict[str, float]


REGIONS = {
    "sentence": Region((-0.5, 0.1, 0.2), {"SSt": 0.5, "SSp": 0.5, "DSt": 1.5, "DSp": 1.5}),
    "speaker": Region((0.5, 0.1, 0.2), {"SSt": 0.5, "SSp": 1.5, "DSt": 0.5, "DSp": 1.5}),
    "deactivation": Region((0.0, -0.55, 0.3), {c: -1.0 for c in CONDITIONS}),
}


def _rounded(values: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(values) * 100.0) / 100.0


def _spread(rng: np.random.Generator, lengths: np.ndarray, run_s: float) -> np.ndarray:
    """Onsets of consecutive items of ``lengths`` s with jittered gaps filling the run."""
    first = rng.uniform(*FIRST_ONSET_S)
    gaps = rng.uniform(1.0, 2.0, lengths.size - 1)
    available = run_s - END_REST_S - first - lengths.sum()
    if available <= 0:
        raise ValueError(f"a run of {run_s} s is too short for {lengths.size} items")
    gaps *= available / gaps.sum()
    return first + np.concatenate([[0.0], np.cumsum(lengths[:-1] + gaps)])


def block_events(rng: np.random.Generator, run_s: float) -> pd.DataFrame:
    """Blocks of six sentences of one condition, in random order, separated by rest."""
    order = np.repeat(np.asarray(CONDITIONS), BLOCKS_PER_CONDITION)
    rng.shuffle(order)
    block_s = (BLOCK_SENTENCES - 1) * BLOCK_SOA_S + SENTENCE_S
    starts = _spread(rng, np.full(order.size, block_s), run_s)
    within = np.arange(BLOCK_SENTENCES) * BLOCK_SOA_S
    onsets = (starts[:, None] + within[None, :]).ravel()
    return pd.DataFrame(
        {
            "onset": _rounded(onsets),
            "duration": SENTENCE_S,
            "trial_type": np.repeat(order, BLOCK_SENTENCES).astype(object),
        }
    )


def event_related_events(rng: np.random.Generator, run_s: float) -> pd.DataFrame:
    """Single sentences of the four conditions in random order, jittered gaps."""
    order = np.repeat(np.asarray(CONDITIONS), EVENTS_PER_CONDITION)
    rng.shuffle(order)
    onsets = _spread(rng, np.full(order.size, SENTENCE_S), run_s)
    return pd.DataFrame(
        {"onset": _rounded(onsets), "duration": SENTENCE_S, "trial_type": order.astype(object)}
    )


def run_events(rng: np.random.Generator, run: str) -> pd.DataFrame:
    """The events of run ``1`` (block design) or ``2`` (event related)."""
    run_s = N_VOLUMES * TR_S
    return (
        block_events(rng, run_s) if RUN_KINDS[run] == "block" else event_related_events(rng, run_s)
    )


def run_design(events: pd.DataFrame) -> pd.DataFrame:
    """The pre-computed design of a run: bids-glm's own matrix, conditions in FIAC order.

    Built by :func:`bids_glm.design.matrix.make_design_matrix` (Glover HRF, cosine drifts
    at ``HIGH_PASS_HZ``, constant) at frame times ``k * TR``; returned with a default index,
    columns ``SSt, SSp, DSt, DSp, drift_1..K, constant``.
    """
    design = make_design_matrix(
        frame_times(N_VOLUMES, TR_S), events, drift_model="cosine", high_pass_hz=HIGH_PASS_HZ
    )
    others = [c for c in design.columns if c not in CONDITIONS]
    return design[[*CONDITIONS, *others]].reset_index(drop=True)


def design_file(design_dir: Path, run: str) -> Path:
    """Where run ``run``'s design goes: bids-glm's own ``_design.tsv`` name."""
    entities = {"sub": SUBJECT, "task": TASK, "run": run, "space": SPACE}
    return naming.design_path(Path(design_dir), entities)


def write_design(path: Path, design: pd.DataFrame) -> None:
    """Write a design as TSV: header = column names, one row per volume, full precision."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(design.to_csv(sep="\t", index=False, lineterminator="\n"))


def _truth(seed: int) -> dict:
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    centre = grid_centre(SHAPE)
    semi = np.asarray(BRAIN_SEMI_AXES_MM) / VOXEL_SIZE_MM
    regions = {}
    for name, region in REGIONS.items():
        centre_ijk = [int(v) for v in np.rint(centre + np.asarray(region.offset) * semi)]
        regions[name] = {
            "centre_ijk": centre_ijk,
            "radius_vox": REGION_RADIUS_VOX,
            "n_voxels": int(sphere_mask(SHAPE, centre_ijk, REGION_RADIUS_VOX).sum()),
            "weights": dict(region.weights),
            "unit_percent": UNIT_PERCENT,
        }
    return {
        "format_version": FORMAT_VERSION,
        "generator": f"bids-glm-demo {__version__}",
        "design": DESIGN,
        "seed": int(seed),
        "task": TASK,
        "tr_s": TR_S,
        "n_volumes": N_VOLUMES,
        "shape": list(SHAPE),
        "voxel_size_mm": VOXEL_SIZE_MM,
        "affine": mni_affine(SHAPE, VOXEL_SIZE_MM).tolist(),
        "space": SPACE,
        "subjects": [SUBJECT],
        "runs": list(RUNS),
        "run_kinds": dict(RUN_KINDS),
        "sessions": [],
        "conditions": list(CONDITIONS),
        "condition_meanings": dict(CONDITION_MEANINGS),
        "regions": regions,
        "t_contrasts": {k: list(v) for k, v in T_CONTRASTS.items()},
        "f_contrasts": {k: [list(r) for r in v] for k, v in F_CONTRASTS.items()},
        "designs": {},
        "slice_time_ref": 0.0,
        "hrf": {"model": "glover double gamma, unit integral", **GLOVER_PARAMETERS},
        "brain": {"semi_axes_mm": list(BRAIN_SEMI_AXES_MM), "n_voxels": None},
        "noise": asdict(NOISE),
    }


def region_mask(truth: dict, region: str) -> np.ndarray:
    """The boolean 3-D mask of a planted region (``sentence``, ``speaker``, ...)."""
    if region not in truth["regions"]:
        raise ValueError(f"region {region!r} is not planted; expected one of {list(REGIONS)}")
    found = truth["regions"][region]
    return sphere_mask(tuple(truth["shape"]), found["centre_ijk"], found["radius_vox"])


def _reusable(bids_dir: Path, seed: int) -> dict | None:
    """The stored truth when ``bids_dir`` holds a complete FIAC demo of this seed."""
    if not bids_dir.exists() or not any(bids_dir.iterdir()):
        return None
    stored_path = bids_dir / TRUTH_PATH
    if stored_path.is_file():
        stored = json.loads(stored_path.read_text())
        if (
            stored.get("design") == DESIGN
            and stored.get("format_version") == FORMAT_VERSION
            and stored.get("seed") == seed
        ):
            return stored
    raise FileExistsError(
        f"{bids_dir} is not empty and holds no FIAC demo of seed {seed}; "
        "choose another directory or delete it."
    )


def _write_dataset_files(bids_dir: Path, truth: dict) -> None:
    (bids_dir / "README").write_text(
        "bids-glm FIAC-shaped demo dataset\n"
        "=================================\n\n"
        "Simulated task fMRI shaped like two runs of one FIAC subject (sentence\n"
        "repetition: same/different sentence x same/different speaker), with effects\n"
        "planted in three spheres. derivatives/fmriprep mimics fMRIPrep's outputs.\n"
        "code/demo_truth.json records the planted truth. Generated by bids-glm-demo.\n"
    )
    (bids_dir / "CHANGES").write_text(
        "1.0.0 2024-01-01\n  - Simulated dataset generated by bids-glm-demo.\n"
    )
    write_raw_description(
        bids_dir,
        "bids-glm demo: FIAC-shaped sentence repetition task",
        TASK,
        "Listening to sentences, repeated or not, by the same or another speaker "
        "(simulated data, shaped like FIAC).",
        TR_S,
        SHAPE[2],
    )
    write_json(
        bids_dir / f"task-{TASK}_events.json",
        {
            "onset": {"Description": "Sentence onset from the first volume", "Units": "s"},
            "duration": {"Description": "Sentence duration", "Units": "s"},
            "trial_type": {"Description": "Condition", "Levels": dict(CONDITION_MEANINGS)},
        },
    )
    write_tsv(
        bids_dir / "participants.tsv",
        pd.DataFrame({"participant_id": [f"sub-{SUBJECT}"], "age": [25], "sex": ["F"]}),
    )
    write_json(
        bids_dir / "participants.json",
        {
            "age": {"Description": "Age at scan", "Units": "year"},
            "sex": {"Description": "Sex", "Levels": {"F": "female", "M": "male"}},
        },
    )
    write_derivatives_description(bids_dir)
    del truth


def make_fiac_dataset(
    bids_dir: Path,
    design_dir: Path,
    *,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Write the FIAC-shaped dataset in ``bids_dir`` and its designs in ``design_dir``.

    Parameters
    ----------
    bids_dir : Path
        Created; must be absent or empty, unless it already holds a FIAC demo of the same
        seed, which is then reused as is (its designs are rewritten, byte for byte equal).
    design_dir : Path
        One ``sub-01_task-fiac_run-<r>_space-<space>_design.tsv`` per run.
    seed : int
        Non-negative; the same seed gives byte-identical files.
    progress : callable, optional
        Called with one line of text per run written.

    Returns
    -------
    dict
        The truth, also written to ``bids_dir/code/demo_truth.json``.
    """
    bids_dir, design_dir = Path(bids_dir), Path(design_dir)
    stored = _reusable(bids_dir, seed)
    if stored is not None:
        _write_designs(bids_dir, design_dir)
        return stored
    truth = _truth(seed)
    geometry = brain_geometry(SHAPE, VOXEL_SIZE_MM, NOISE, BRAIN_SEMI_AXES_MM)
    truth["brain"]["n_voxels"] = geometry.n_voxels
    region_columns = {}
    for name in REGIONS:
        flat = np.flatnonzero(region_mask(truth, name).ravel(order="F"))
        columns = np.searchsorted(geometry.brain_flat_index, flat)
        if not np.array_equal(
            geometry.brain_flat_index[np.minimum(columns, geometry.n_voxels - 1)], flat
        ):
            raise ValueError(f"the {name} region reaches outside the brain ellipsoid")
        region_columns[name] = columns
    excluded = np.concatenate(list(region_columns.values()))
    bids_dir.mkdir(parents=True, exist_ok=True)
    _write_dataset_files(bids_dir, truth)
    for i_run, run in enumerate(RUNS):
        rng = np.random.default_rng([seed, 16, i_run])
        events = run_events(rng, run)
        regressors = {
            c: event_regressor(
                events.loc[events["trial_type"] == c, "onset"].to_numpy(),
                events.loc[events["trial_type"] == c, "duration"].to_numpy(),
                N_VOLUMES,
                TR_S,
            )
            for c in CONDITIONS
        }
        responses = {
            name: (
                region_columns[name],
                UNIT_PERCENT / 100.0 * sum(w * regressors[c] for c, w in region.weights.items()),
            )
            for name, region in REGIONS.items()
        }
        bold = simulate_bold(rng, geometry, responses, TR_S, NOISE)
        entities = {"sub": SUBJECT, "ses": None, "run": run}
        write_run_files(bids_dir, entities, rng, geometry, truth, NOISE, bold, events, excluded)
        del bold
        if progress is not None:
            progress(f"  wrote sub-{SUBJECT}_run-{run} ({RUN_KINDS[run]})")
    truth["designs"] = _write_designs(bids_dir, design_dir)
    truth = json.loads(json.dumps(truth))  # the value returned is the value written
    write_json(bids_dir / TRUTH_PATH, truth)
    return truth


def _write_designs(bids_dir: Path, design_dir: Path) -> dict[str, str]:
    """Build each run's design from its events file; return run -> design file name."""
    written = {}
    for run in RUNS:
        events_path = (
            bids_dir
            / f"sub-{SUBJECT}"
            / "func"
            / f"sub-{SUBJECT}_task-{TASK}_run-{run}_events.tsv"
        )
        events = pd.read_csv(events_path, sep="\t", na_values="n/a", keep_default_na=False)
        path = design_file(design_dir, run)
        write_design(path, run_design(events))
        written[run] = path.name
    return written
