"""How one run is read and fitted: held whole, or never held, by volumes or by columns.

`run_reading` is the one place that chooses; `fit_run_as_read` reads and fits the run
that way. The ways give the same fit (the held one is nilearn's arithmetic bit for bit;
see `HOLD_SERIES_MAX_BYTES` for the one difference of the ones summed over volumes):

* ``"held"``: the (T, V) series is read, scaled in place and fitted (`fit_run`);
* ``"volumes"``: a 4-D NIfTI is summed volume by volume as it is inflated
  (`fit_streamed_run`);
* ``"grayordinates"``: a CIFTI dense series, which stores each grayordinate's series in
  turn, is read, scaled and fitted a block of grayordinates at a time (`fit_column_run`),
  with the held path's arithmetic exactly;
* ``"grayordinate volumes"``: a CIFTI series to smooth (or to scale by its grand mean) is
  read a block of volumes at a time, smoothed and summed (`fit_streamed_grayordinates`);
* ``"surface volumes"``: a GIfTI run's two files are decoded a volume at a time, smoothed
  along the meshes if asked, and summed (`fit_streamed_surface`).

The last three hold no more than a block of the run: memory independent of its length.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from bids_glm.design.run_design import RunDesign
from bids_glm.glm.cross_products import CrossProductAccumulator
from bids_glm.glm.fit import fit_from_ols, fit_glm
from bids_glm.glm.fit_from_sums import scaled_ols
from bids_glm.glm.ols import OlsPass, design_operators, ols_pass_over_columns
from bids_glm.glm.results import RunFit
from bids_glm.glm.scaling import percent_scale_columns, scale_signal, warn_floored
from bids_glm.image.cifti import CiftiGeometry, cifti_smoother
from bids_glm.image.cifti_columns import cifti_columns
from bids_glm.image.geometry import VolumeGeometry
from bids_glm.image.gifti_volumes import DECODED_AHEAD, streamable, surface_volume_blocks
from bids_glm.image.stream import StreamedSeries, stream_masked_series
from bids_glm.image.surface import SurfaceGeometry
from bids_glm.image.surface_smoothing import SmoothedSurfaceStream
from bids_glm.image.usable import log_unusable, usable_columns
from bids_glm.pipeline.kept_series import KeptSeries
from bids_glm.runtime.progress import Progress
from bids_glm.runtime.threads import read_ahead, thread_budget
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")

# A run's in-mask series up to this size is held and fitted as nilearn does, bit for bit:
# holding it costs no more than the sums would, and its scaled values are rounded to float32
# exactly as nilearn rounds them. Larger runs are summed as they stream (memory independent
# of their length); those sums scale exactly (float64), which moves AR(1) estimates by
# ~1e-6, so a voxel within that of a 0.01 bin edge may bin differently than in nilearn.
HOLD_SERIES_MAX_BYTES = 64 * 2**20
AR1_BINS = 100  # AR(1) bins per unit of the coefficient, as `bids_glm.glm.fit.fit_glm`
# grayordinates read and fitted at a time: fit_glm's 4096 voxels, fewer for long runs so a
# block's float64 series stays near 16 MiB (a thread holds ~3 such arrays while fitting it)
COLUMN_BLOCK_BYTES = 16 * 2**20
COLUMN_BLOCK_RANGE = (256, 4096)
CIFTI_BLOCK_VOLUMES = 128  # volumes of a streamed CIFTI run read and smoothed at a time
SURFACE_BLOCK_VOLUMES = 16  # volumes of a streamed GIfTI run added to the sums at a time


def run_reading(design: RunDesign, geometry: VolumeGeometry, settings: Settings) -> str:
    """How a run is read: ``"held"``, ``"volumes"``, ``"grayordinates"``,
    ``"grayordinate volumes"`` or ``"surface volumes"``.

    The series is held where something needs it beyond one block of it:

    * single-trial estimates of surface and CIFTI runs: their pass takes each vertex's
      whole series (`bids_glm.glm.lss_terms.lss_pass`, a block at a time). Volume runs
      not small are summed as they stream all the same, and their series is kept by
      voxel chunks beside the sums, in a work-folder file when large
      (`bids_glm.pipeline.kept_series`);
    * GIfTI files not decodable a volume at a time
      (`bids_glm.image.gifti_volumes.streamable`), and GIfTI runs to smooth without
      meshes (the held read names the missing meshes);
    * small runs (`HOLD_SERIES_MAX_BYTES`) other than CIFTI ones read by grayordinates:
      they are fitted exactly as nilearn rounds them.

    Larger volume and GIfTI runs are summed as they stream; CIFTI runs are read by blocks
    of grayordinates, or, to be smoothed (the operator needs the run's usable
    grayordinates, found by a first pass) or globally scaled, by blocks of volumes into
    sums.
    """
    if settings.single_trial is not None and not isinstance(geometry, VolumeGeometry):
        return "held"
    if isinstance(geometry, SurfaceGeometry):
        return _surface_reading(design, geometry, settings)
    if isinstance(geometry, CiftiGeometry):
        smoothed = settings.model.smoothing_fwhm_mm > 0
        if not smoothed and settings.model.signal_scaling != "global":
            return "grayordinates"
    if _small(design, geometry):
        return "held"
    return "volumes" if isinstance(geometry, VolumeGeometry) else "grayordinate volumes"


def _small(design: RunDesign, geometry: VolumeGeometry) -> bool:
    """Whether the run's kept series, as float32, fits in `HOLD_SERIES_MAX_BYTES`."""
    n_values = int(np.count_nonzero(design.kept_volumes)) * geometry.n_values
    return n_values * np.dtype(np.float32).itemsize <= HOLD_SERIES_MAX_BYTES


def _surface_reading(design: RunDesign, geometry: SurfaceGeometry, settings: Settings) -> str:
    """Held when small, to smooth without meshes, or in files `bids_glm.image.gifti_volumes`
    cannot decode a volume at a time."""
    smoothed = settings.model.smoothing_fwhm_mm > 0
    if _small(design, geometry) or (smoothed and geometry.meshes is None):
        return "held"
    inline = all(streamable(Path(path)) for path in design.run.image_paths)
    return "surface volumes" if inline else "held"


def fit_run_as_read(
    design: RunDesign, geometry: VolumeGeometry, settings: Settings, keep_data: bool = False
) -> tuple[RunFit, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read and fit one run as `run_reading` says.

    Returns the fit, the usable values (in-mask voxels, vertices or grayordinates), the
    run's (unsmoothed) mean volume (None off volumes) and, with ``keep_data``, the scaled
    data that were fitted (else None): an array when the run was held, a `KeptSeries`
    when it was streamed (both read as ``data[:, voxels]``).
    """
    reading = run_reading(design, geometry, settings)
    if reading == "held":
        return fit_run(design, geometry, settings, keep_data)
    if reading == "volumes":
        return fit_streamed_run(design, geometry, settings, keep_data)
    if reading == "grayordinate volumes":
        return (*fit_streamed_grayordinates(design, geometry, settings), None)
    if reading == "surface volumes":
        return (*fit_streamed_surface(design, geometry, settings), None)
    return (*fit_column_run(design, geometry, settings), None)


def fit_run(
    design: RunDesign, geometry: VolumeGeometry, settings: Settings, keep_data: bool = False
) -> tuple[RunFit, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read, scale and fit one run's kept volumes, holding its series.

    Returns the fit, the usable values, the run's (unsmoothed) mean volume and, with
    ``keep_data``, the scaled data that were fitted (else None).
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
    _log_fit(design, settings, geometry, data.shape[0], started)
    return fit, series.usable, series.mean_volume, (data if keep_data else None)


def fit_streamed_run(
    design: RunDesign, geometry: VolumeGeometry, settings: Settings, keep_data: bool = False
) -> tuple[RunFit, np.ndarray, np.ndarray, KeptSeries | None]:
    """Fit one run from sums over its kept volumes, accumulated as they are read.

    Returns the fit, the usable in-mask voxels, the run's (unsmoothed) mean volume and,
    with ``keep_data``, its series as `KeptSeries` (scaled as read; else None).
    """
    started = time.perf_counter()
    matrix = design.fitted_matrix()
    kept = None
    if keep_data:
        n_kept = int(np.count_nonzero(design.kept_volumes))
        scaling, work_dir = settings.model.signal_scaling, settings.work_dir
        kept = KeptSeries(n_kept, geometry.n_values, scaling, work_dir)
    ols, series = _streamed_ols(matrix, design, geometry, settings, kept)
    fit = _fit_from_ols(matrix, ols, design, settings)
    if kept is not None:
        kept.finish(series.usable, geometry.locations)
    _log_fit(design, settings, geometry, series.n_volumes, started)
    return fit, series.usable, series.mean_volume, kept


def _streamed_ols(
    matrix: np.ndarray,
    design: RunDesign,
    geometry: VolumeGeometry,
    settings: Settings,
    kept: KeptSeries | None = None,
) -> tuple[OlsPass, StreamedSeries]:
    """Stream the run into sums (and ``kept``) and turn them into the OLS pass of the
    scaled data.

    The sums the OLS pass does not keep (eight (V,) arrays) are freed on return, before
    the AR(1) refit allocates its own.
    """
    # inflation keeps one core busy in its own thread: the reading and summing threads share
    # the rest (on 2 cores, one each: 2 + 2 threads took ~7 % more CPU for no speed)
    n_threads = max(thread_budget() - 1, 1)
    sums = CrossProductAccumulator(matrix, geometry.n_values, n_threads=n_threads)
    consume = sums.add
    if kept is not None:

        def consume(block: np.ndarray) -> None:
            sums.add(block)
            kept.add(block)

    series = stream_masked_series(
        design.run.image_paths[0],
        geometry.mask,
        geometry.affine,
        consume,
        settings.model.smoothing_fwhm_mm,
        keep_volumes=design.kept_volumes,
        n_threads=n_threads,
        varying=sums.varying,
    )
    return _ols_of_sums(matrix, sums, design, settings), series


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
    fit = _fit_from_ols(matrix, ols, design, settings)
    log_unusable(path, usable, "grayordinates")
    if percent:
        warn_floored(means, "percent", usable, geometry.locations)
    _log_fit(design, settings, geometry, columns.n_kept, started)
    return fit, usable, None


def fit_streamed_grayordinates(
    design: RunDesign, geometry: CiftiGeometry, settings: Settings
) -> tuple[RunFit, np.ndarray, None]:
    """Fit a CIFTI run from sums over its kept volumes, smoothed a block at a time.

    A first pass over the file (by blocks of grayordinates) finds the analysed
    grayordinates that are finite and not constant, among which the smoothing works;
    a second reads the kept volumes :data:`CIFTI_BLOCK_VOLUMES` at a time, smooths them
    (as the held read does) and adds them to the sums of `fit_streamed_run`. Returns the
    fit, the usable grayordinates and None (no mean volume).
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
    ols, usable = _summed_ols(matrix, blocks(), geometry.n_values, design, settings)
    fit = _fit_from_ols(matrix, ols, design, settings)
    log_unusable(path, usable, "grayordinates")
    _log_fit(design, settings, geometry, every.n_kept, started)
    return fit, usable, None


def fit_streamed_surface(
    design: RunDesign, geometry: SurfaceGeometry, settings: Settings
) -> tuple[RunFit, np.ndarray, None]:
    """Fit a GIfTI run from sums over its kept volumes, decoded one at a time.

    Both hemispheres' files are decoded in step (`bids_glm.image.gifti_volumes`), their
    analysed vertices gathered a block of volumes at a time and added to the sums of
    `fit_streamed_run`. With smoothing, each block is first smoothed along the meshes
    (`bids_glm.image.surface_smoothing.SmoothedSurfaceStream`); when the vertices to
    smooth among turn out other than the first block suggested, the sums are discarded
    and the files decoded again. Returns the fit, the usable vertices and None.
    """
    started = time.perf_counter()
    paths = tuple(Path(p) for p in design.run.image_paths)
    kept = np.asarray(design.kept_volumes, dtype=bool)
    fwhm_mm = settings.model.smoothing_fwhm_mm
    matrix = design.fitted_matrix()
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
        ols, usable = _summed_ols(matrix, stream.blocks(), geometry.n_values, design, settings)
        if not stream.settled:
            LOGGER.info(
                "%s: vertices constant or non-finite past the first %d volumes change the "
                "smoothing; decoding the run again",
                paths[0].name,
                stream.block_volumes,
            )
            del ols, usable  # freed before the second pass's sums are made
            ols, usable = _summed_ols(matrix, stream.blocks(), geometry.n_values, design, settings)
    else:
        decoded = surface_volume_blocks(
            paths, geometry.n_vertices, geometry.mask, kept, SURFACE_BLOCK_VOLUMES
        )
        blocks = read_ahead(decoded, DECODED_AHEAD, "gifti-decode")
        ols, usable = _summed_ols(matrix, blocks, geometry.n_values, design, settings)
    fit = _fit_from_ols(matrix, ols, design, settings)
    log_unusable(paths[0], usable, "vertices")
    n_kept = int(np.count_nonzero(kept))
    _log_fit(design, settings, geometry, n_kept, started)
    return fit, usable, None


def _summed_ols(
    matrix: np.ndarray,
    blocks: Iterable[np.ndarray],
    n_values: int,
    design: RunDesign,
    settings: Settings,
) -> tuple[OlsPass, np.ndarray]:
    """The OLS pass of the scaled data from sums over (b, V) blocks of kept volumes, in
    time order, and the usable columns (finite in every volume, not constant).

    Blocks may be modified (non-finite values are set to 0, which keeps the sums finite;
    their columns are not usable). Long runs log their progress (the run's first file).
    The sums are freed on return, before the AR(1) refit allocates its own.
    """
    sums = CrossProductAccumulator(matrix, n_values)
    finite = np.ones(n_values, dtype=bool)
    label = Path(design.run.image_paths[0]).name
    progress, n_summed = Progress(label, matrix.shape[0], "volumes summed"), 0
    for values in blocks:
        bad = ~np.isfinite(values)
        if bad.any():
            finite &= ~bad.any(axis=0)
            values[bad] = 0.0
        sums.add(values)
        n_summed += values.shape[0]
        progress.update(n_summed)
    return _ols_of_sums(matrix, sums, design, settings), finite & sums.varying()


def _ols_of_sums(
    matrix: np.ndarray, sums: CrossProductAccumulator, design: RunDesign, settings: Settings
) -> OlsPass:
    """The OLS pass of the run's data, scaled as the model says, from its streamed sums."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return scaled_ols(
            matrix,
            sums.result(),
            list(design.matrix.columns),
            settings.model.noise_model,
            settings.model.signal_scaling,
            AR1_BINS,
        )


def _fit_from_ols(
    matrix: np.ndarray, ols: OlsPass, design: RunDesign, settings: Settings
) -> RunFit:
    """The run's fit (OLS, or AR(1) refitted from the pass's summaries), consuming ``ols``."""
    names, noise_model = list(design.matrix.columns), settings.model.noise_model
    with np.errstate(divide="ignore", invalid="ignore"):
        return fit_from_ols(
            matrix, ols, names, noise_model, AR1_BINS, thread_budget(), consume=True
        )


def column_block(n_volumes: int) -> int:
    """Grayordinates per block for a run of ``n_volumes`` kept volumes (`COLUMN_BLOCK_BYTES`)."""
    fitting = COLUMN_BLOCK_BYTES // (np.dtype(np.float64).itemsize * max(n_volumes, 1))
    return int(np.clip(fitting, *COLUMN_BLOCK_RANGE))


def _log_fit(
    design: RunDesign, settings: Settings, geometry, n_volumes: int, started: float
) -> None:
    LOGGER.info(
        "%s: fitted %s on %d %s x %d volumes in %.1f s",
        design.run.label,
        settings.model.noise_model,
        geometry.n_values,
        geometry.locations,
        n_volumes,
        time.perf_counter() - started,
    )
