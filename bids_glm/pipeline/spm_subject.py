"""``--preset spm12``: one SPM12 multi-session model per unit (participant, task, space).

Replaces the default path (one GLM per run, then fixed effects) for the unit: the runs
are SPM sessions of one design, scaled, masked, high-pass filtered, whitened and fitted
as ``spm_spm`` does, and each contrast is replicated over the sessions that have its
conditions and scaled (``replsc``). The maps keep bids-glm's subject-level names.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_glm.derivatives import maps as outputs
from bids_glm.derivatives import naming
from bids_glm.derivatives.files import MapWriter, write_mask
from bids_glm.derivatives.spm_outputs import SpmRecord, write_spm_contrast_maps, write_spm_design
from bids_glm.design.hrf import basis_suffixes
from bids_glm.design.run_design import ContrastPlan, RunDesign
from bids_glm.design.spm_basis import spm_basis_set
from bids_glm.design.spm_session_design import SpmDesign, spm_design, spm_session
from bids_glm.errors import InputError
from bids_glm.glm.results import ContrastMaps
from bids_glm.glm.spm_contrasts import f_contrast, replicate_over_sessions, t_contrast
from bids_glm.glm.spm_filter import dct_high_pass_basis
from bids_glm.glm.spm_fit import SpmFit
from bids_glm.glm.spm_globals import session_scale_factors
from bids_glm.glm.spm_model import SpmLayout, fit_spm_model
from bids_glm.glm.thresholding import height_threshold
from bids_glm.image.geometry import VolumeGeometry
from bids_glm.image.spm_smooth import spm_kernels
from bids_glm.inputs.events import EventSpec, clean_events, read_events
from bids_glm.pipeline.run import RunOutcome
from bids_glm.pipeline.spm_data import read_spm_data
from bids_glm.pipeline.subject_clusters import volume_cluster_table
from bids_glm.pipeline.units import AnalysisUnit
from bids_glm.settings import Settings

__all__ = ["analyse_spm_unit", "spm_dry_run"]

LOGGER = logging.getLogger("bids_glm")


def _check_runs(designs: tuple[RunDesign, ...]) -> float:
    """The runs' shared TR; volumes only, every volume after the dummy scans kept."""
    for design in designs:
        run = design.run
        if run.surface_paths:
            raise InputError(f"{run.bold_path}: --preset spm12 fits volumes (NIfTI) only")
        if not design.kept_volumes[design.dummy_scans :].all():
            raise InputError(
                f"{run.bold_path}: --preset spm12 fits every volume after --dummy-scans; "
                "expected no censored volumes (scrub:..., non_steady_state)"
            )
    repetition_times = {design.run.tr_s for design in designs}
    if len(repetition_times) > 1:
        raise InputError(
            f"{', '.join(str(d.run.bold_path) for d in designs)}: RepetitionTime differs "
            f"between runs ({sorted(repetition_times)}); an SPM12 model needs one TR"
        )
    return repetition_times.pop()


def _explicit_mask(settings: Settings, bold_path: Path) -> np.ndarray | None:
    """``--mask`` as SPM's explicit mask (voxels > 0), on the BOLD grid; or None."""
    if settings.mask is None:
        return None
    image = nib.load(settings.mask)
    bold = nib.load(bold_path)
    if image.shape[:3] != bold.shape[:3] or not np.allclose(image.affine, bold.affine, atol=1e-4):
        raise InputError(
            f"{settings.mask}: --mask with --preset spm12 must be on the BOLD grid "
            f"({bold_path.name}: shape {bold.shape[:3]}, affine as the BOLD's)"
        )
    return np.asarray(image.dataobj).reshape(image.shape[:3]) > 0


def _session_events(design: RunDesign, n_scans: int, settings: Settings):
    """The run's cleaned events as an SPM session (``n_scans`` after the dummy scans)."""
    run, dummy_scans = design.run, design.dummy_scans
    spec = settings.model.events or EventSpec()
    duration_s = (dummy_scans + n_scans) * run.tr_s
    events = clean_events(read_events(run.events_path), run.events_path, duration_s, spec)
    if len(events) and not np.allclose(events["modulation"], 1.0):
        LOGGER.warning(
            "%s: event amplitudes ignored: SPM12 models every event at height 1",
            run.events_path,
        )
    confounds = design.matrix[list(design.confound_columns)] if design.confound_columns else None
    return spm_session(events, n_scans, confounds, dummy_scans)


def _weights_by_condition(
    row: dict[str, float], conditions: set[str], suffixes: list[str]
) -> dict[str, list[float]] | None:
    """A contrast row over our column names -> per-condition basis weights (None if not)."""
    weights: dict[str, list[float]] = {}
    for column, value in row.items():
        match = [(c, k) for c in conditions for k, s in enumerate(suffixes) if c + s == column]
        if not match:
            return None
        condition, k = match[0]
        weights.setdefault(condition, [0.0] * len(suffixes))[k] += value
    return weights


def _contrast(
    plan: ContrastPlan, design: SpmDesign, fit: SpmFit, suffixes: list[str]
) -> tuple[ContrastMaps, np.ndarray] | None:
    """One contrast's maps and SPM weights, or None when the model cannot give it."""
    conditions = {name for columns in design.condition_columns for name in columns}
    rows = [_weights_by_condition(row, conditions, suffixes) for row in plan.rows]
    if any(row is None for row in rows):
        LOGGER.warning("contrast %s skipped: it weighs columns other than conditions", plan.name)
        return None
    n_columns = design.matrix.shape[1]
    merged = {name: [1.0] for row in rows for name, values in row.items() if any(values)}
    _, sessions = replicate_over_sessions(merged, design.condition_columns, n_columns)
    if not sessions:
        LOGGER.warning("contrast %s skipped: no run has all its conditions", plan.name)
        return None
    matrix = np.stack(
        [
            replicate_over_sessions(r, design.condition_columns, n_columns, True, sessions)[0]
            for r in rows
        ]
    )
    erdf = fit.model.erdf
    if plan.stat_type == "t":
        t = t_contrast(matrix[0], fit)
        return ContrastMaps.for_t(plan.name, t.effect, t.variance, t.t, erdf), matrix[0]
    f = f_contrast(matrix, fit)
    variance = fit.res_ms * f.interest_trace / f.eidf
    maps = ContrastMaps.for_f(plan.name, f.projection, variance, f.f, f.eidf, erdf)
    return maps, matrix


def _design(
    unit: AnalysisUnit, settings: Settings, n_scans: tuple[int, ...], tr_s: float
) -> SpmDesign:
    """SPM's design of the unit's runs."""
    spm12 = settings.spm12
    sessions = tuple(
        _session_events(d, n, settings) for d, n in zip(unit.designs, n_scans, strict=True)
    )
    basis = spm_basis_set(tr_s / spm12.fmri_t, spm12.time_derivative, spm12.dispersion_derivative)
    return spm_design(sessions, tr_s, basis, spm12.fmri_t, spm12.fmri_t0)


def _fit(unit: AnalysisUnit, settings: Settings):
    """Read the runs and fit the SPM12 model: (data, design, fit, noise, TR)."""
    spm12 = settings.spm12
    tr_s = _check_runs(unit.designs)
    bold_paths = tuple(d.run.bold_path for d in unit.designs)
    fwhm_mm = settings.model.smoothing_fwhm_mm
    kernels = spm_kernels(fwhm_mm, nib.load(bold_paths[0]).affine) if fwhm_mm else None
    explicit = _explicit_mask(settings, bold_paths[0])
    dummy_scans = settings.model.dummy_scans
    data = read_spm_data(
        bold_paths, explicit, settings.mask, kernels, dummy_scans, settings.work_dir
    )
    design = _design(unit, settings, data.n_scans, tr_s)
    drifts = tuple(dct_high_pass_basis(n, tr_s, spm12.high_pass_cutoff_s) for n in data.n_scans)
    layout = SpmLayout(design.matrix, design.session_rows, drifts, design.constant_columns)
    scale = session_scale_factors(data.globals_, design.session_rows)
    fit, noise = fit_spm_model(data.data, scale, layout, spm12.serial_correlations)
    return data, design, fit, noise, tr_s


def spm_dry_run(unit: AnalysisUnit, settings: Settings) -> None:
    """``--dry-run`` with the preset: write and print the SPM design; fit nothing."""
    tr_s = _check_runs(unit.designs)
    n_scans = tuple(d.run.n_volumes - d.dummy_scans for d in unit.designs)
    design = _design(unit, settings, n_scans, tr_s)
    entities = naming.subject_level_entities(unit.entities)
    folder = naming.subject_func_dir(settings.output_dir, entities)
    sources = tuple(outputs.source_uri(d.run.bold_path, settings) for d in unit.designs)
    record = SpmRecord(None, (), None, design.column_names, len(unit.designs))
    write_spm_design(folder, entities, design.matrix, record, settings.spm12, tr_s, sources)
    print(
        f"  SPM12 model (--preset spm12): {len(n_scans)} session(s), {sum(n_scans)} scans, "
        f"TR {tr_s} s; columns: {', '.join(design.column_names)}"
    )


def _write_clusters(target, plan, maps: ContrastMaps, settings: Settings) -> None:
    """The contrast's cluster table, thresholded as the default mode's subject maps."""
    z_threshold = height_threshold(
        maps.z, settings.height_control, settings.alpha, threshold_none=settings.alpha
    )
    table = volume_cluster_table(target.geometry, maps.z, z_threshold, settings.cluster_extent)
    outputs.write_cluster_table(target, plan, table, z_threshold, settings)


def analyse_spm_unit(unit: AnalysisUnit, settings: Settings) -> tuple[list[RunOutcome], Path]:
    """Fit the unit's runs as one SPM12 model and write its subject-level outputs.

    Returns one outcome per run (all sharing the model's design file) and the mean image.
    """
    started = time.perf_counter()
    data, design, fit, noise, tr_s = _fit(unit, settings)
    record = SpmRecord(
        erdf=fit.model.erdf,
        hyperparameters=() if noise is None else tuple(float(h) for h in noise.hyperparameters),
        pool_voxels=None if noise is None else noise.pool.n_voxels,
        column_names=design.column_names,
        n_sessions=len(unit.designs),
    )
    LOGGER.info(
        "%s: SPM12 model fitted on %d voxels x %d scans (%d sessions, erdf %.2f) in %.1f s",
        unit.name,
        data.data.shape[1],
        data.data.shape[0],
        len(unit.designs),
        record.erdf,
        time.perf_counter() - started,
    )
    entities = naming.subject_level_entities(unit.entities)
    folder = naming.subject_func_dir(settings.output_dir, entities)
    sources = tuple(outputs.source_uri(d.run.bold_path, settings) for d in unit.designs)
    geometry = VolumeGeometry(data.mask, data.affine)
    suffixes = basis_suffixes(settings.model.hrf_model)
    with MapWriter.for_budget() as writer:
        design_path = write_spm_design(
            folder, entities, design.matrix, record, settings.spm12, tr_s, sources
        )
        write_mask(naming.mask_path(folder, entities), geometry)
        mean_image = outputs.write_mean_image(
            writer, folder, entities, list(data.mean_volumes), sources, data.affine
        )
        target = outputs.MapTarget(folder, entities, geometry, np.ones(geometry.n_values, bool))
        provenance = outputs.Provenance(settings.model, sources, "subject")
        for plan in unit.contrasts:
            result = _contrast(plan, design, fit, suffixes)
            if result is None:
                continue
            maps, weights = result
            spm = (record, settings.spm12, weights)
            write_spm_contrast_maps(writer, target, plan, maps, provenance, spm)
            _write_clusters(target, plan, maps, settings)
    usable = np.ones(geometry.n_values, dtype=bool)
    outcomes = [
        RunOutcome(usable=usable, maps={}, source=source, design_path=design_path)
        for source in sources
    ]
    return outcomes, mean_image
