"""Agreement with nilearn 0.14.1 on real BOLD: Haxby et al. (2001), sub-1, 12 runs, 8 conditions.

Our designs, masked and scaled data, fits, contrasts and fixed effects against nilearn's
``FirstLevelModel`` fitted on the same images with the same design matrices and mask. The data
live outside the repository (``../shared/realdata``); the tests skip when they are absent.

Tolerances: max |dz| < 1e-3 and effects within 1e-4 of the map's max |effect|. nilearn reads and
scales the data in its own way (float32 arithmetic), which moves AR(1) coefficients by ~1e-7, so
a voxel whose coefficient lies within 1e-6 of a 0.01 bin edge may be whitened with the
neighbouring bin's coefficient: such voxels are counted (fewer than 0.1% of voxels) and only they
are left out of the comparison.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm.contrasts import compute_fixed_effects
from nilearn.glm.first_level import FirstLevelModel

from bids_glm.design.hrf_spec import GLOVER
from bids_glm.design.matrix import frame_times, make_design_matrix
from bids_glm.glm.contrast import compute_contrast
from bids_glm.glm.fit import fit_glm
from bids_glm.glm.fixed_effects import fixed_effects
from bids_glm.glm.results import ContrastMaps, RunFit
from bids_glm.glm.scaling import scale_signal
from bids_glm.image.io import read_masked_series
from bids_glm.image.mask import combine_masks, load_mask

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
TR_S = 2.5
CONDITIONS = ("bottle", "cat", "chair", "face", "house", "scissors", "scrambledpix", "shoe")
T_CONTRASTS = {"face": {"face": 1.0}, "faceMinusHouse": {"face": 1.0, "house": -1.0}}
F_ROWS = ("face", "house", "cat")
MAX_DZ = 1e-3
EFFECT_RTOL = 1e-4
BIN_WIDTH = 0.01
EDGE_DISTANCE = 1e-6
MAX_EDGE_FRACTION = 1e-3


@dataclass(frozen=True)
class Runs:
    """A subject's runs, read as the pipeline reads them."""

    mask: np.ndarray
    affine: np.ndarray
    bold_paths: list[Path]
    designs: list[pd.DataFrame]
    data: list[np.ndarray]

    @property
    def mask_image(self) -> nib.Nifti1Image:
        return nib.Nifti1Image(self.mask.astype(np.uint8), self.affine)


def _read_runs(dataset: str, n_runs: int | None = None) -> Runs:
    root = REALDATA / dataset
    if not root.is_dir():
        pytest.skip(f"real data not available: {root}")
    func = root / "derivatives" / "fmriprep" / "sub-1" / "func"
    bold_paths = sorted(func.glob("*desc-preproc_bold.nii.gz"))[:n_runs]
    mask_paths = sorted(func.glob("*desc-brain_mask.nii.gz"))[:n_runs]
    events_paths = sorted((root / "sub-1" / "func").glob("*_events.tsv"))[:n_runs]
    masks = [load_mask(path) for path in mask_paths]
    mask, affine = combine_masks([m for m, _ in masks]), masks[0][1]
    designs, data = [], []
    for bold_path, events_path in zip(bold_paths, events_paths, strict=True):
        n_scans = nib.load(bold_path).shape[3]
        events = pd.read_csv(events_path, sep="\t")
        designs.append(
            make_design_matrix(
                frame_times(n_scans, TR_S),
                events,
                hrf_model=GLOVER,
                drift_model="cosine",
                high_pass_hz=0.01,
            )
        )
        series = read_masked_series(bold_path, mask, affine)
        assert series.usable.all()
        data.append(scale_signal(series.data, "percent"))
    return Runs(mask, affine, bold_paths, designs, data)


def _contrasts(columns: list[str]) -> dict[str, tuple[np.ndarray, str]]:
    """Contrast name -> (weights over ``columns``, stat type): two t and one 3-row F."""

    def weights(terms: dict[str, float]) -> np.ndarray:
        vector = np.zeros(len(columns))
        for column, weight in terms.items():
            vector[columns.index(column)] = weight
        return vector

    contrasts = {name: (weights(terms), "t") for name, terms in T_CONTRASTS.items()}
    contrasts["faceHouseCat"] = (np.stack([weights({row: 1.0}) for row in F_ROWS]), "F")
    return contrasts


def _nilearn_model(runs: Runs, noise_model: str) -> FirstLevelModel:
    model = FirstLevelModel(
        mask_img=runs.mask_image,
        noise_model=noise_model,
        signal_scaling=0,
        smoothing_fwhm=None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit([str(path) for path in runs.bold_paths], design_matrices=runs.designs)


def _nilearn_maps(model: FirstLevelModel, per_run_weights: list, stat_type: str) -> dict:
    """nilearn's maps for per-run weights (all-zero weights leave a run out)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "approximate fixed effects", "contrast ... is null"
        return model.compute_contrast(per_run_weights, stat_type=stat_type, output_type="all")


def _only_run(weights: np.ndarray, run: int, n_runs: int) -> list[np.ndarray]:
    """Per-run weights selecting one run: nilearn leaves all-zero contrasts out."""
    return [weights if other == run else np.zeros_like(weights) for other in range(n_runs)]


def _in_mask(image: nib.Nifti1Image, mask: np.ndarray) -> np.ndarray:
    """Masked values in the mask's C order: (V,), or (q, V) for a 4-D image."""
    return np.asarray(image.dataobj, dtype=np.float64)[mask].T


def _edge_voxels(fit: RunFit) -> np.ndarray:
    """Voxels whose unbinned AR(1) coefficient lies within 1e-6 of a 0.01 bin edge."""
    if fit.ar1 is None:
        return np.zeros(fit.n_voxels, dtype=bool)
    steps = fit.ar1 / BIN_WIDTH
    return np.abs(steps - np.round(steps)) * BIN_WIDTH < EDGE_DISTANCE


def _assert_agrees(ours: ContrastMaps, z: np.ndarray, effect: np.ndarray, keep: np.ndarray):
    assert np.all(np.isfinite(ours.z[keep]))
    assert np.max(np.abs(ours.z[keep] - z[keep])) < MAX_DZ
    scale = np.max(np.abs(effect[..., keep]))
    assert np.max(np.abs(ours.effect[..., keep] - effect[..., keep])) < EFFECT_RTOL * scale


@pytest.fixture(scope="module")
def haxby() -> Runs:
    return _read_runs("haxby2001_sub-1_25mm")


@pytest.fixture(scope="module")
def fitted(haxby) -> dict[str, tuple[list[RunFit], FirstLevelModel]]:
    """Noise model -> our 12 run fits and nilearn's fitted model."""
    models = {}
    for noise_model in ("ols", "ar1"):
        fits = [
            fit_glm(design.to_numpy(), data, list(design.columns), noise_model=noise_model)
            for design, data in zip(haxby.designs, haxby.data, strict=True)
        ]
        models[noise_model] = fits, _nilearn_model(haxby, noise_model)
    return models


def test_the_real_haxby_runs(haxby):
    assert len(haxby.designs) == 12
    assert {data.shape for data in haxby.data} == {(121, int(haxby.mask.sum()))}
    assert haxby.mask.sum() > 100
    for design in haxby.designs:
        assert tuple(design.columns[: len(CONDITIONS)]) == CONDITIONS
        assert design.columns[-1] == "constant"


def test_ar1_bins_match_nilearn_except_at_bin_edges(fitted):
    fits, model = fitted["ar1"]
    edges = np.array([_edge_voxels(fit) for fit in fits])
    assert edges.sum() < MAX_EDGE_FRACTION * edges.size
    for fit, labels, edge in zip(fits, model.labels_, edges, strict=True):
        assert fit.bin_rho.size > 10  # real data: many distinct AR bins
        differ = fit.bin_rho[fit.voxel_bin] != labels.astype(np.float64)
        assert not np.any(differ & ~edge)


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_single_runs_match_nilearn(haxby, fitted, noise_model):
    fits, model = fitted[noise_model]
    columns = list(haxby.designs[0].columns)
    for name, (weights, stat_type) in _contrasts(columns).items():
        for run, fit in enumerate(fits):
            reference = _nilearn_maps(model, _only_run(weights, run, len(fits)), stat_type)
            ours = compute_contrast(fit, weights, stat_type, name)
            assert ours.dof == 121 - len(columns)
            _assert_agrees(
                ours,
                _in_mask(reference["z_score"], haxby.mask),
                _in_mask(reference["effect_size"], haxby.mask),
                ~_edge_voxels(fit),
            )


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_fixed_effects_match_nilearn(haxby, fitted, noise_model):
    fits, model = fitted[noise_model]
    keep = ~np.logical_or.reduce([_edge_voxels(fit) for fit in fits])
    columns = list(haxby.designs[0].columns)
    for name, (weights, stat_type) in _contrasts(columns).items():
        run_maps = [compute_contrast(fit, weights, stat_type, name) for fit in fits]
        reference = _nilearn_maps(model, [weights] * len(fits), stat_type)
        ours = fixed_effects(run_maps, "unweighted")
        assert ours.dof == sum(fit.dof for fit in fits) and ours.n_runs == 12
        _assert_agrees(
            ours,
            _in_mask(reference["z_score"], haxby.mask),
            _in_mask(reference["effect_size"], haxby.mask),
            keep,
        )
        if stat_type == "F":
            # precision weighting pools the same evidence: it agrees in what it detects
            pooled = fixed_effects(run_maps, "precision")
            assert np.corrcoef(pooled.z, ours.z)[0, 1] > 0.9
            continue
        # precision weighting against nilearn's compute_fixed_effects on its own run maps
        per_run = [_nilearn_maps(model, _only_run(weights, run, 12), "t") for run in range(12)]
        expected_effect, _, _, expected_z = compute_fixed_effects(
            [maps["effect_size"] for maps in per_run],
            [maps["effect_variance"] for maps in per_run],
            mask=haxby.mask_image,
            precision_weighted=True,
            dofs=[fit.dof for fit in fits],
        )
        _assert_agrees(
            fixed_effects(run_maps, "precision"),
            _in_mask(expected_z, haxby.mask),
            _in_mask(expected_effect, haxby.mask),
            keep,
        )


def test_single_slice_run_matches_nilearn():
    runs = _read_runs("haxby2001_sub-1_1slice", n_runs=1)
    assert runs.mask.shape[2] == 1
    design = runs.designs[0]
    fit = fit_glm(design.to_numpy(), runs.data[0], list(design.columns), noise_model="ols")
    model = _nilearn_model(runs, "ols")
    contrasts = _contrasts(list(design.columns))
    contrasts["houseMinusFace"] = (-contrasts["faceMinusHouse"][0], "t")
    for name, (weights, stat_type) in contrasts.items():
        reference = _nilearn_maps(model, [weights], stat_type)
        ours = compute_contrast(fit, weights, stat_type, name)
        _assert_agrees(
            ours,
            _in_mask(reference["z_score"], runs.mask),
            _in_mask(reference["effect_size"], runs.mask),
            np.ones(fit.n_voxels, dtype=bool),
        )
    # house vs face is strong in this slice
    assert compute_contrast(fit, contrasts["houseMinusFace"][0]).z.max() > 5
