"""One run: read its kept volumes, scale, fit, write its design and run-level maps.

Runs in the participant's process, or in a worker process when runs go to a pool
(:mod:`bids_glm.runtime.workers`): everything it needs comes in as arguments and
everything the fixed effects need goes back in a :class:`RunOutcome`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bids_glm.derivatives import maps as outputs
from bids_glm.derivatives import naming
from bids_glm.derivatives.files import MapWriter
from bids_glm.design.contrasts import missing_columns
from bids_glm.design.run_design import ContrastPlan, RunDesign
from bids_glm.glm.contrast import LazyContrasts, compute_contrast
from bids_glm.glm.cross_products import CrossProductAccumulator
from bids_glm.glm.fit import fit_from_ols, fit_glm
from bids_glm.glm.fit_from_sums import scaled_ols
from bids_glm.glm.ols import OlsPass
from bids_glm.glm.results import ContrastMaps, RunFit
from bids_glm.glm.scaling import scale_signal
from bids_glm.image.geometry import VolumeGeometry
from bids_glm.image.stream import StreamedSeries, stream_masked_series
from bids_glm.pipeline.single_trial import write_single_trials
from bids_glm.pipeline.subject_clusters import write_subject_clusters
from bids_glm.runtime.logs import captured_warnings
from bids_glm.runtime.threads import thread_budget
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")


@dataclass(frozen=True)
class SubjectLevel:
    """Where a one-run participant's subject-level maps go: they are its run's maps.

    Fixed effects of one run return that run, so its contrasts are written there too as they
    are computed (each image compressed once) with their cluster tables, instead of being
    formed again from the fit, recompressed and rewritten after the run.
    """

    folder: Path
    entities: dict[str, str]


@dataclass(frozen=True)
class RunOutcome:
    """What the fixed-effects step needs from one fitted run.

    Attributes
    ----------
    usable : ndarray of bool, shape (V,)
        In-mask voxels with finite, non-constant data in this run.
    maps : mapping of str to ContrastMaps
        Contrast label -> this run's maps as fixed effects need them (statistics dropped),
        possibly formed from the run's fit on access (`bids_glm.glm.contrast.LazyContrasts`);
        contrasts whose columns the run lacks are absent.
    source : str
        The run's BOLD file as a BIDS URI.
    design_path : Path
        The run's written design table.
    skipped_contrasts : dict of str to str
        Contrast name -> why this run does not contribute to it.
    warnings : list of str
        Warnings logged while the run was processed (possibly in a worker process).
    mean_volume : ndarray of float32, shape (x, y, z), or None
        Time-mean of the run's kept volumes before smoothing (the reports' underlay).
    """

    usable: np.ndarray
    maps: Mapping[str, ContrastMaps]
    source: str
    design_path: Path
    mean_volume: np.ndarray | None = None
    skipped_contrasts: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# A run's in-mask series up to this size is held and fitted as nilearn does, bit for bit:
# holding it costs no more than the sums would, and its scaled values are rounded to float32
# exactly as nilearn rounds them. Larger runs are summed as they stream (memory independent
# of their length); those sums scale exactly (float64), which moves AR(1) estimates by
# ~1e-6, so a voxel within that of a 0.01 bin edge may bin differently than in nilearn.
HOLD_SERIES_MAX_BYTES = 64 * 2**20
AR1_BINS = 100  # AR(1) bins per unit of the coefficient, as `bids_glm.glm.fit.fit_glm`


def holds_series(design: RunDesign, geometry: VolumeGeometry, settings: Settings) -> bool:
    """Whether a run's (T, V) series is held in memory, rather than summed as it streams.

    The one place choosing how runs are read. The series is held where something needs it
    beyond the sums:

    * single-trial estimates: LSA/LSS refit the series once per trial;
    * surfaces and CIFTI: smoothing along a mesh takes only the vertices that are finite
      and not constant over the kept volumes, so its operator is known only once every
      volume was read (streaming would decode each file twice); and a CIFTI dense series is
      stored grayordinate by grayordinate (volume index fastest), so reading it volume by
      volume would sweep the whole file for every block;
    * small runs (`HOLD_SERIES_MAX_BYTES`), which are fitted exactly as nilearn rounds them.

    Otherwise `fit_streamed_run` keeps memory independent of the run's length.
    """
    if settings.single_trial is not None or not isinstance(geometry, VolumeGeometry):
        return True
    n_values = int(np.count_nonzero(design.kept_volumes)) * geometry.n_values
    return n_values * np.dtype(np.float32).itemsize <= HOLD_SERIES_MAX_BYTES


def fit_run(
    design: RunDesign, geometry: VolumeGeometry, settings: Settings, keep_data: bool = False
) -> tuple[RunFit, np.ndarray, np.ndarray, np.ndarray | None]:
    """Read, scale and fit one run's kept volumes, holding its series.

    Returns the fit, the usable in-mask voxels, the run's (unsmoothed) mean volume and,
    with ``keep_data``, the scaled data that were fitted (else None).
    """
    run = design.run
    started = time.perf_counter()
    series = geometry.read_series(  # a volume's or a surface's reader
        run.image_paths, settings.model.smoothing_fwhm_mm, keep_volumes=design.kept_volumes
    )
    data = scale_signal(
        series.data, settings.model.signal_scaling, series.usable, geometry.locations
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = fit_glm(
            design.fitted_matrix(),
            data,
            list(design.matrix.columns),
            noise_model=settings.model.noise_model,
        )
    _log_fit(run.label, settings, data.shape[1], geometry.locations, data.shape[0], started)
    return fit, series.usable, series.mean_volume, (data if keep_data else None)


def fit_streamed_run(
    design: RunDesign, geometry: VolumeGeometry, settings: Settings
) -> tuple[RunFit, np.ndarray, np.ndarray]:
    """Fit one run from sums over its kept volumes, accumulated as they are read.

    Returns the fit, the usable in-mask voxels and the run's (unsmoothed) mean volume.
    """
    started = time.perf_counter()
    matrix = design.fitted_matrix()
    ols, series = _streamed_ols(matrix, design, geometry, settings)
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = fit_from_ols(
            matrix,
            ols,
            list(design.matrix.columns),
            settings.model.noise_model,
            AR1_BINS,
            thread_budget(),
            consume=True,
        )
    _log_fit(
        design.run.label,
        settings,
        geometry.n_values,
        geometry.locations,
        series.n_volumes,
        started,
    )
    return fit, series.usable, series.mean_volume


def _streamed_ols(
    matrix: np.ndarray, design: RunDesign, geometry: VolumeGeometry, settings: Settings
) -> tuple[OlsPass, StreamedSeries]:
    """Stream the run into sums and turn them into the OLS pass of the scaled data.

    The sums the OLS pass does not keep (eight (V,) arrays) are freed on return, before
    the AR(1) refit allocates its own.
    """
    # inflation keeps one core busy in its own thread: the reading and summing threads share
    # the rest (on 2 cores, one each: 2 + 2 threads took ~7 % more CPU for no speed)
    n_threads = max(thread_budget() - 1, 1)
    sums = CrossProductAccumulator(matrix, geometry.n_values, n_threads=n_threads)
    series = stream_masked_series(
        design.run.image_paths[0],
        geometry.mask,
        geometry.affine,
        sums.add,
        settings.model.smoothing_fwhm_mm,
        keep_volumes=design.kept_volumes,
        n_threads=n_threads,
        varying=sums.varying,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ols = scaled_ols(
            matrix,
            sums.result(),
            list(design.matrix.columns),
            settings.model.noise_model,
            settings.model.signal_scaling,
            AR1_BINS,
        )
    return ols, series


def _log_fit(
    label: str, settings: Settings, n_values: int, locations: str, n_volumes: int, started: float
) -> None:
    LOGGER.info(
        "%s: fitted %s on %d %s x %d volumes in %.1f s",
        label,
        settings.model.noise_model,
        n_values,
        locations,
        n_volumes,
        time.perf_counter() - started,
    )


def process_run(
    design: RunDesign,
    contrasts: Sequence[ContrastPlan],
    geometry: VolumeGeometry,
    settings: Settings,
    writer: MapWriter | None = None,
    subject: SubjectLevel | None = None,
) -> RunOutcome:
    """Fit one run, write its design and run-level maps, return its contrast maps.

    Maps go to ``writer`` (the unit's, so they are compressed while the next run is read);
    without one (in a worker process), to a writer of the run's own. With ``subject`` (the
    participant has this run only), the subject-level maps and cluster tables are written
    too, and the outcome holds no maps for fixed effects.
    """
    own_writer = MapWriter(n_threads=1) if writer is None else nullcontext(writer)
    with captured_warnings() as messages, own_writer as run_writer:
        outcome = _process_run(design, contrasts, geometry, settings, run_writer, subject)
    outcome.warnings.extend(messages)
    return outcome


def _process_run(
    design: RunDesign,
    contrasts: Sequence[ContrastPlan],
    geometry: VolumeGeometry,
    settings: Settings,
    writer: MapWriter,
    subject: SubjectLevel | None,
) -> RunOutcome:
    entities = naming.run_level_entities(design.run.entities)
    folder = naming.subject_func_dir(settings.output_dir, entities)
    single_trial = settings.single_trial is not None
    if holds_series(design, geometry, settings):
        fit, usable, mean_volume, data = fit_run(design, geometry, settings, single_trial)
    else:
        (fit, usable, mean_volume), data = fit_streamed_run(design, geometry, settings), None
    design_path = outputs.write_design(design, folder, entities, settings)
    source = outputs.source_uri(design.run.bold_path, settings)
    target = outputs.MapTarget(folder, entities, geometry, usable)
    if settings.model_maps:
        outputs.write_model_maps(writer, target, fit, source)
    provenance = outputs.Provenance(settings.model, (source,), "run")
    outcome = RunOutcome(
        usable=usable, maps={}, source=source, design_path=design_path, mean_volume=mean_volume
    )
    present = []
    for plan in contrasts:
        absent = missing_columns(plan.columns, list(design.matrix.columns))
        if absent:
            reason = f"column(s) {', '.join(absent)} absent from its design"
            LOGGER.warning("%s: contrast %s skipped, %s", design.run.label, plan.name, reason)
            outcome.skipped_contrasts[plan.name] = reason
        else:
            present.append(plan)
    also = ()
    if subject is not None:
        subject_target = outputs.MapTarget(subject.folder, subject.entities, geometry, usable)
        subject_provenance = outputs.Provenance(settings.model, (source,), "subject")
        also = ((subject_target, subject_provenance),)
    maps = _write_contrasts(fit, present, writer, target, provenance, also, settings)
    if single_trial:
        write_single_trials(design, data, target, source, settings)
    return replace(outcome, maps=maps)


def _write_contrasts(
    fit: RunFit,
    contrasts: Sequence[ContrastPlan],
    writer: MapWriter,
    target: outputs.MapTarget,
    provenance: outputs.Provenance,
    also: tuple[tuple[outputs.MapTarget, outputs.Provenance], ...],
    settings: Settings,
) -> Mapping[str, ContrastMaps]:
    """Compute and write each contrast's run-level maps; return what fixed effects take.

    That is the fit itself (`LazyContrasts`: beta, sigma2 and bins, p + 2 values per voxel)
    when p is at most the values per voxel of the contrasts' effects and variances, so
    none of those is held while the run's maps are written; otherwise those maps. With
    ``also`` (a one-run participant's subject level), the maps and their cluster tables
    are written there too, and nothing is returned.
    """
    weights = {plan.label: plan.weights_matrix(list(fit.column_names)) for plan in contrasts}
    n_kept = sum(2 * w.shape[0] + 1 if w.shape[0] > 1 else 2 for w in weights.values())
    lazy = fit.beta.shape[0] <= n_kept
    kept: dict[str, ContrastMaps] = {}
    for plan in contrasts:
        with np.errstate(divide="ignore", invalid="ignore"):
            maps = compute_contrast(fit, weights[plan.label], plan.stat_type, plan.name)
        outputs.write_contrast_maps(writer, target, plan, maps, provenance, also)
        for subject_target, _ in also:  # in the background, as the maps' compression
            writer.submit(write_subject_clusters, subject_target, plan, maps.z, settings)
        if not (lazy or also):
            kept[plan.label] = _inputs_of_fixed_effects(maps)
        del maps  # before the next contrast's are formed
    if also:
        return {}
    if not lazy:
        return kept
    nothing = np.broadcast_to(np.float64(0.0), fit.sigma2.shape)
    slim = replace(fit, ar1=None, r_squared=nothing)  # what the estimates do not use
    return LazyContrasts(
        slim, {plan.label: (weights[plan.label], plan.stat_type, plan.name) for plan in contrasts}
    )


def _inputs_of_fixed_effects(maps: ContrastMaps) -> ContrastMaps:
    """The run's maps without its statistics, which fixed effects recompute.

    stat, z and p become one shared zero-stride view, so a participant's memory grows by
    only the effect and variance (or F estimate) of each run, not five maps per contrast.
    """
    nothing = np.broadcast_to(np.float64(0.0), maps.stat.shape)
    return replace(maps, stat=nothing, z=nothing, p=nothing)
