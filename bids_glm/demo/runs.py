"""Simulate one run of the demo dataset and write its raw and fMRIPrep-like files."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bids_glm.demo.confounds import confounds_table
from bids_glm.demo.files import nifti_header, write_json, write_nifti_gz, write_tsv
from bids_glm.demo.signal import (
    BrainGeometry,
    NoiseModel,
    event_regressor,
    simulate_bold,
    simulate_events,
)


def background_noise_table(std: float) -> np.ndarray:
    """Return 256 int16 values, the normal quantiles of ``std``: a random byte picks one."""
    quantiles = stats.norm.ppf((np.arange(256) + 0.5) / 256.0) * std
    return np.rint(quantiles).astype(np.int16)


def bold_volumes(
    rng: np.random.Generator, bold: np.ndarray, geometry: BrainGeometry, noise: NoiseModel
) -> Iterator[bytes]:
    """Yield each volume as int16 Fortran-order bytes: rounded ``bold`` in the brain.

    Outside the brain: a static level drawn uniformly in ``noise.background_range`` plus
    quantised normal noise of ``noise.background_noise_std`` drawn from random bytes.
    """
    n_total = int(np.prod(geometry.shape))
    low, high = noise.background_range
    level = np.rint(rng.uniform(low, high, n_total)).astype(np.int16)
    table = background_noise_table(noise.background_noise_std)
    volume = np.empty(n_total, dtype=np.int16)
    for row in bold:
        picks = np.frombuffer(rng.bytes(n_total), dtype=np.uint8)
        np.add(level, table[picks], out=volume)
        volume[geometry.brain_flat_index] = np.rint(row)
        yield volume.tobytes()


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``target`` to ``source``; copy where hard links are not supported."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def write_run(
    bids_dir: Path,
    entities: Mapping[str, str | None],
    rng: np.random.Generator,
    geometry: BrainGeometry,
    blob_columns: Mapping[str, np.ndarray],
    truth: dict,
    noise: NoiseModel,
) -> None:
    """Simulate one run and write its events, BOLD, brain mask and confounds.

    Parameters
    ----------
    bids_dir : Path
        Dataset root; derivatives go to ``derivatives/fmriprep``.
    entities : mapping
        ``sub``, ``ses`` (None for no session level) and ``run`` labels.
    rng : numpy.random.Generator
        The run's generator; consumed in a fixed order (events, BOLD, confounds, background).
    geometry : BrainGeometry
    blob_columns : mapping
        Planted condition -> in-brain column indices of its blob.
    truth : dict
        Task, TR, volumes, grid, space, conditions and planted amplitudes.
    noise : NoiseModel
    """
    n_volumes, tr_s = truth["n_volumes"], truth["tr_s"]
    events = simulate_events(rng, truth["conditions"], n_volumes * tr_s)
    responses = {}
    for condition, columns in blob_columns.items():
        selected = events[events["trial_type"] == condition]
        regressor = event_regressor(
            selected["onset"].to_numpy(), selected["duration"].to_numpy(), n_volumes, tr_s
        )
        amplitude = truth["planted"][condition]["amplitude_percent"] / 100.0
        responses[condition] = (columns, amplitude * regressor)
    bold = simulate_bold(rng, geometry, responses, tr_s, noise)
    excluded = np.concatenate(list(blob_columns.values()))
    write_run_files(bids_dir, entities, rng, geometry, truth, noise, bold, events, excluded)


def write_run_files(
    bids_dir: Path,
    entities: Mapping[str, str | None],
    rng: np.random.Generator,
    geometry: BrainGeometry,
    truth: dict,
    noise: NoiseModel,
    bold: np.ndarray,
    events: pd.DataFrame,
    excluded_columns: np.ndarray,
) -> None:
    """Write a simulated run: events, BOLD (raw and preprocessed), brain mask, confounds.

    Parameters
    ----------
    bids_dir : Path
        Dataset root; derivatives go to ``derivatives/fmriprep``.
    entities : mapping
        ``sub``, ``ses`` (None for no session level) and ``run`` labels.
    rng : numpy.random.Generator
        The run's generator, after the BOLD was drawn; consumed for the confounds, then
        the background.
    geometry : BrainGeometry
    truth : dict
        Task, TR, volumes, grid and space.
    noise : NoiseModel
    bold : ndarray of float32, shape (T, V)
        The simulated in-brain time series.
    events : DataFrame
        The run's events, written as is.
    excluded_columns : ndarray of int
        In-brain columns kept out of the confounds' tissue masks (planted regions).
    """
    sub, ses, run, task = entities["sub"], entities["ses"], entities["run"], truth["task"]
    folder = Path(f"sub-{sub}", *([f"ses-{ses}"] if ses else []), "func")
    prefix = f"sub-{sub}{f'_ses-{ses}' if ses else ''}_task-{task}_run-{run}"
    raw_dir, deriv_dir = bids_dir / folder, bids_dir / "derivatives" / "fmriprep" / folder
    raw_dir.mkdir(parents=True, exist_ok=True)
    deriv_dir.mkdir(parents=True, exist_ok=True)
    n_volumes, tr_s = truth["n_volumes"], truth["tr_s"]
    confounds, confounds_sidecar = confounds_table(rng, bold, geometry, excluded_columns, tr_s)

    raw_bold = f"{folder.as_posix()}/{prefix}_bold.nii.gz"
    sources = {"Sources": [f"bids:raw:{raw_bold}"]}
    affine = np.asarray(truth["affine"])
    shape, voxel_size = tuple(truth["shape"]), truth["voxel_size_mm"]
    space_prefix = f"{prefix}_space-{truth['space']}"
    preproc = deriv_dir / f"{space_prefix}_desc-preproc_bold.nii.gz"
    header = nifti_header((*shape, n_volumes), np.int16, affine, voxel_size, tr_s)
    write_nifti_gz(preproc, header, bold_volumes(rng, bold, geometry, noise))
    del bold
    write_json(
        deriv_dir / f"{space_prefix}_desc-preproc_bold.json",
        {"RepetitionTime": tr_s, "TaskName": task, "SkullStripped": False, **sources},
    )
    mask = np.zeros(int(np.prod(shape)), dtype=np.uint8)
    mask[geometry.brain_flat_index] = 1
    mask_header = nifti_header(shape, np.uint8, affine, voxel_size)
    write_nifti_gz(
        deriv_dir / f"{space_prefix}_desc-brain_mask.nii.gz", mask_header, [mask.tobytes()]
    )
    write_json(deriv_dir / f"{space_prefix}_desc-brain_mask.json", {"Type": "Brain", **sources})
    write_tsv(deriv_dir / f"{prefix}_desc-confounds_timeseries.tsv", confounds, "%.8g")
    write_json(deriv_dir / f"{prefix}_desc-confounds_timeseries.json", confounds_sidecar)

    link_or_copy(preproc, bids_dir / raw_bold)
    write_tsv(raw_dir / f"{prefix}_events.tsv", events)
