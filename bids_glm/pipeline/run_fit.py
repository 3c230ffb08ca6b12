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

import time
from pathlib import Path

import numpy as np

from bids_glm.design.run_design import RunDesign
from bids_glm.glm.cross_products import CrossProductAccumulator
from bids_glm.glm.fit import fit_glm
from bids_glm.glm.ols import OlsPass
from bids_glm.glm.results import RunFit
from bids_glm.glm.scaling import scale_signal
from bids_glm.image.cifti import CiftiGeometry
from bids_glm.image.geometry import VolumeGeometry
from bids_glm.image.gifti_volumes import streamable
from bids_glm.image.stream import StreamedSeries, stream_masked_series
from bids_glm.image.surface import SurfaceGeometry
from bids_glm.pipeline.fit_steps import finish_fit, kept_series, log_fit, ols_of_sums
from bids_glm.pipeline.kept_series import KeptSeries
from bids_glm.pipeline.surface_fit import (
    fit_column_run,
    fit_streamed_grayordinates,
    fit_streamed_surface,
)
from bids_glm.runtime.threads import spare_cores
from bids_glm.settings import Settings

# A run's in-mask series up to this size is held and fitted as nilearn does, bit for bit:
# holding it costs no more than the sums would, and its scaled values are rounded to float32
# exactly as nilearn rounds them. Larger runs are summed as they stream (memory independent
# of their length); those sums scale exactly (float64), which moves AR(1) estimates by
# ~1e-6, so a voxel within that of a 0.01 bin edge may bin differently than in nilearn.
HOLD_SERIES_MAX_BYTES = 64 * 2**20


def run_reading(design: RunDesign, geometry: VolumeGeometry, settings: Settings) -> str:
    """How a run is read: ``"held"``, ``"volumes"``, ``"grayordinates"``,
    ``"grayordinate volumes"`` or ``"surface volumes"``.

    The series is held where something needs it beyond one block of it:

    * GIfTI files not decodable a volume at a time
      (`bids_glm.image.gifti_volumes.streamable`), and GIfTI runs to smooth without
      meshes (the held read names the missing meshes);
    * small runs (`HOLD_SERIES_MAX_BYTES`) other than CIFTI ones read by grayordinates:
      they are fitted exactly as nilearn rounds them.

    Larger volume and GIfTI runs are summed as they stream; CIFTI runs are read by blocks
    of grayordinates, or, to be smoothed (the operator needs the run's usable
    grayordinates, found by a first pass), globally scaled or given single-trial
    estimates, by blocks of volumes into sums. Single-trial estimates take each
    location's whole series (`bids_glm.glm.lss_terms.lss_pass`, a block of locations at a
    time), so a run summed by volumes is also kept by chunks of locations beside the sums
    (`bids_glm.pipeline.kept_series`, in a work-folder file when large).
    """
    if isinstance(geometry, SurfaceGeometry):
        return _surface_reading(design, geometry, settings)
    if isinstance(geometry, CiftiGeometry):
        smoothed = settings.model.smoothing_fwhm_mm > 0
        by_columns = settings.model.signal_scaling != "global" and not settings.single_trial
        if not smoothed and by_columns:
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
        return fit_streamed_grayordinates(design, geometry, settings, keep_data)
    if reading == "surface volumes":
        return fit_streamed_surface(design, geometry, settings, keep_data)
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
    log_fit(design, settings, geometry, data.shape[0], started)
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
    kept = kept_series(design, geometry.n_values, settings) if keep_data else None
    ols, series = _streamed_ols(matrix, design, geometry, settings, kept)
    fit = finish_fit(matrix, ols, design, settings)
    log_fit(design, settings, geometry, series.n_volumes, started)
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
    # the rest (on 2 cores, one each: 2 + 2 threads took ~7 % more CPU for no speed); with
    # none to spare (--n-cpus 1), the calling thread does it all
    n_threads = spare_cores()
    sums = CrossProductAccumulator(matrix, geometry.n_values, n_threads=max(n_threads, 1))
    consume = sums  # a forked reducing child adds the blocks it completes with this thread
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
    if kept is not None:
        kept.finish(sums.result().voxel_mean)
    ols = ols_of_sums(matrix, sums, design, settings, series.usable, geometry.locations)
    return ols, series
