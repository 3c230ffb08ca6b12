"""Surface and CIFTI runs read without holding them: by blocks of grayordinates, or by
blocks of volumes into sums (`bids_glm.pipeline.run_fit.run_reading` chooses)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bids_glm.design.run_design import RunDesign
from bids_glm.glm.ols import design_operators, ols_pass_over_columns
from bids_glm.glm.results import RunFit
from bids_glm.glm.scaling import percent_scale_columns, warn_floored
from bids_glm.image.cifti import CiftiGeometry, cifti_smoother
from bids_glm.image.cifti_columns import cifti_columns
from bids_glm.image.gifti_volumes import DECODED_AHEAD, surface_volume_blocks
from bids_glm.image.surface import SurfaceGeometry
from bids_glm.image.surface_smoothing import SmoothedSurfaceStream
from bids_glm.image.usable import log_unusable, usable_columns
from bids_glm.pipeline.fit_steps import finish_fit, kept_series, log_fit, summed_ols
from bids_glm.pipeline.kept_series import KeptSeries
from bids_glm.runtime.threads import read_ahead, thread_budget
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")

# grayordinates read and fitted at a time: fit_glm's 4096 voxels, fewer for long runs so a
# block's float64 series stays near 16 MiB (a thread holds ~3 such arrays while fitting it)
COLUMN_BLOCK_BYTES = 16 * 2**20
COLUMN_BLOCK_RANGE = (256, 4096)
CIFTI_BLOCK_VOLUMES = 128  # volumes of a streamed CIFTI run read and smoothed at a time
SURFACE_BLOCK_VOLUMES = 16  # volumes of a streamed GIfTI run added to the sums at a time


def fit_column_run(
    design: RunDesign, geometry: CiftiGeometry, settings: Settings
) -> tuple[RunFit, np.ndarray, None]:
    """Fit a CIFTI run a block of grayordinates at a time, never holding the run.

    Each block is read from the file, its unusable grayordinates found and zeroed, scaled
    ("percent" or "none") and fitted as the held path does the whole run
    (`bids_glm.glm.ols.ols_pass_over_columns`, in `thread_budget` threads); the AR(1)
    refit then works from the per-grayordinate summaries. Returns the fit, the usable
    grayordinates and None (no mean volume).
    """
    started = time.perf_counter()
    path = design.run.image_paths[0]
    columns = geometry.columns(path, design.kept_volumes)
    usable = np.zeros(columns.n_columns, dtype=bool)
    means = np.ones(columns.n_columns, dtype=np.float32)
    percent = settings.model.signal_scaling == "percent"

    def scaled_block(block: slice) -> np.ndarray:
        values = columns.read(block)
        usable[block] = usable_columns(values)
        if percent:
            means[block] = percent_scale_columns(values)
        return values

    matrix = design.fitted_matrix()
    n_threads = thread_budget()
    noise_model = settings.model.noise_model
    with np.errstate(divide="ignore", invalid="ignore"):
        ols = ols_pass_over_columns(
            design_operators(matrix),
            scaled_block,
            columns.n_columns,
            column_block(columns.n_kept),
            lag_cross=noise_model == "ar1",
            n_threads=n_threads,
        )
    fit = finish_fit(matrix, ols, design, settings)
    log_unusable(path, usable, "grayordinates")
    if percent:
        warn_floored(means, "percent", usable, geometry.locations)
    log_fit(design, settings, geometry, columns.n_kept, started)
    return fit, usable, None


def fit_streamed_grayordinates(
    design: RunDesign, geometry: CiftiGeometry, settings: Settings, keep_data: bool = False
) -> tuple[RunFit, np.ndarray, None, KeptSeries | None]:
    """Fit a CIFTI run from sums over its kept volumes, smoothed a block at a time.

    A first pass over the file (by blocks of grayordinates) finds the analysed
    grayordinates that are finite and not constant, among which the smoothing works;
    a second reads the kept volumes :data:`CIFTI_BLOCK_VOLUMES` at a time, smooths them
    (as the held read does) and adds them to the sums of `fit_streamed_run`. Returns the
    fit, the usable grayordinates, None (no mean volume) and, with ``keep_data``, the
    run's series (`KeptSeries`; else None).
    """
    started = time.perf_counter()
    path = design.run.image_paths[0]
    every = cifti_columns(Path(path), len(geometry.brain_models), None, design.kept_volumes)
    fwhm_mm, smooth = settings.model.smoothing_fwhm_mm, None
    if fwhm_mm > 0:  # the first pass: which grayordinates the smoothing takes
        finite, varying = every.finite_and_varying()
        smooth = cifti_smoother(geometry, fwhm_mm, path, finite & varying & geometry.mask)

    def blocks() -> Iterator[np.ndarray]:
        for block in every.volume_blocks(CIFTI_BLOCK_VOLUMES):
            block[:, ~geometry.mask] = 0.0  # as the held read: left out, so constant
            if smooth is not None:
                smooth(block)
            yield block[:, geometry.mask]

    matrix = design.fitted_matrix()
    kept = kept_series(design, geometry.n_values, settings) if keep_data else None
    ols, usable = summed_ols(matrix, blocks(), geometry, design, settings, kept)
    fit = finish_fit(matrix, ols, design, settings)
    log_unusable(path, usable, "grayordinates")
    log_fit(design, settings, geometry, every.n_kept, started)
    return fit, usable, None, kept


def fit_streamed_surface(
    design: RunDesign, geometry: SurfaceGeometry, settings: Settings, keep_data: bool = False
) -> tuple[RunFit, np.ndarray, None, KeptSeries | None]:
    """Fit a GIfTI run from sums over its kept volumes, decoded one at a time.

    Both hemispheres' files are decoded in step (`bids_glm.image.gifti_volumes`), their
    analysed vertices gathered a block of volumes at a time and added to the sums of
    `fit_streamed_run`. With smoothing, each block is first smoothed along the meshes
    (`bids_glm.image.surface_smoothing.SmoothedSurfaceStream`); when the vertices to
    smooth among turn out other than the first block suggested, the sums are discarded
    and the files decoded again. Returns the fit, the usable vertices, None and, with
    ``keep_data``, the run's series (`KeptSeries`; else None).
    """
    started = time.perf_counter()
    paths = tuple(Path(p) for p in design.run.image_paths)
    kept = np.asarray(design.kept_volumes, dtype=bool)
    fwhm_mm = settings.model.smoothing_fwhm_mm
    matrix = design.fitted_matrix()

    def series() -> KeptSeries | None:
        return kept_series(design, geometry.n_values, settings) if keep_data else None

    if fwhm_mm > 0:
        stream = SmoothedSurfaceStream(
            paths,
            geometry.meshes.paths,
            geometry.n_vertices,
            geometry.mask,
            fwhm_mm,
            kept,
            SURFACE_BLOCK_VOLUMES,
        )
        series_kept = series()
        ols, usable = summed_ols(matrix, stream.blocks(), geometry, design, settings, series_kept)
        if not stream.settled:
            LOGGER.info(
                "%s: vertices constant or non-finite past the first %d volumes change the "
                "smoothing; decoding the run again",
                paths[0].name,
                stream.block_volumes,
            )
            del ols, usable, series_kept  # freed before the second pass's are made
            series_kept = series()
            ols, usable = summed_ols(
                matrix, stream.blocks(), geometry, design, settings, series_kept
            )
    else:
        decoded = surface_volume_blocks(
            paths, geometry.n_vertices, geometry.mask, kept, SURFACE_BLOCK_VOLUMES
        )
        blocks = read_ahead(decoded, DECODED_AHEAD, "gifti-decode")
        series_kept = series()
        ols, usable = summed_ols(matrix, blocks, geometry, design, settings, series_kept)
    fit = finish_fit(matrix, ols, design, settings)
    log_unusable(paths[0], usable, "vertices")
    n_kept = int(np.count_nonzero(kept))
    log_fit(design, settings, geometry, n_kept, started)
    return fit, usable, None, series_kept


def column_block(n_volumes: int) -> int:
    """Grayordinates per block for a run of ``n_volumes`` kept volumes (`COLUMN_BLOCK_BYTES`)."""
    fitting = COLUMN_BLOCK_BYTES // (np.dtype(np.float64).itemsize * max(n_volumes, 1))
    return int(np.clip(fitting, *COLUMN_BLOCK_RANGE))
