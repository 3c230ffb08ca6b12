"""The steps every way of reading a run ends with: from its sums to its OLS pass, from the
OLS pass to its fit, and the fit's log line (`bids_glm.pipeline.run_fit`,
`bids_glm.pipeline.surface_fit`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bids_glm.design.run_design import RunDesign
from bids_glm.glm.cross_products import CrossProductAccumulator
from bids_glm.glm.fit import fit_from_ols
from bids_glm.glm.fit_from_sums import scaled_ols
from bids_glm.glm.ols import OlsPass
from bids_glm.glm.results import RunFit
from bids_glm.image.cifti import CiftiGeometry
from bids_glm.image.surface import SurfaceGeometry
from bids_glm.pipeline.kept_series import KeptSeries
from bids_glm.runtime.progress import Progress
from bids_glm.runtime.threads import thread_budget
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")

AR1_BINS = 100  # AR(1) bins per unit of the coefficient, as `bids_glm.glm.fit.fit_glm`


def summed_ols(
    matrix: np.ndarray,
    blocks: Iterable[np.ndarray],
    geometry: SurfaceGeometry | CiftiGeometry,
    design: RunDesign,
    settings: Settings,
    kept: KeptSeries | None = None,
) -> tuple[OlsPass, np.ndarray]:
    """The OLS pass of the scaled data from sums over (b, V) blocks of kept volumes, in
    time order, and the usable columns (finite in every volume, not constant) of
    ``geometry``'s ``n_values`` locations.

    Blocks may be modified (non-finite values are set to 0, which keeps the sums finite;
    their columns are not usable); they are added to ``kept`` too, then finished. Long runs
    log their progress (the run's first file). The sums are freed on return, before the
    AR(1) refit allocates its own.
    """
    sums = CrossProductAccumulator(matrix, geometry.n_values)
    finite = np.ones(geometry.n_values, dtype=bool)
    label = Path(design.run.image_paths[0]).name
    progress, n_summed = Progress(label, matrix.shape[0], "volumes summed"), 0
    for values in blocks:
        bad = ~np.isfinite(values)
        if bad.any():
            finite &= ~bad.any(axis=0)
            values[bad] = 0.0
        sums.add(values)
        if kept is not None:
            kept.add(values)
        n_summed += values.shape[0]
        progress.update(n_summed)
    if kept is not None:
        kept.finish(sums.result().voxel_mean)
    usable = finite & sums.varying()
    return ols_of_sums(matrix, sums, design, settings, usable, geometry.locations), usable


def kept_series(design: RunDesign, n_values: int, settings: Settings) -> KeptSeries:
    """An empty `KeptSeries` for a run's kept volumes (in the work folder when large)."""
    n_kept = int(np.count_nonzero(design.kept_volumes))
    return KeptSeries(n_kept, n_values, settings.model.signal_scaling, settings.work_dir)


def ols_of_sums(
    matrix: np.ndarray,
    sums: CrossProductAccumulator,
    design: RunDesign,
    settings: Settings,
    usable: np.ndarray,
    locations: str,
) -> OlsPass:
    """The OLS pass of the run's data, scaled as the model says, from its streamed sums
    (means floored at 1 warned about among the ``usable`` ``locations``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return scaled_ols(
            matrix,
            sums.result(),
            list(design.matrix.columns),
            settings.model.noise_model,
            settings.model.signal_scaling,
            AR1_BINS,
            usable,
            locations,
        )


def finish_fit(matrix: np.ndarray, ols: OlsPass, design: RunDesign, settings: Settings) -> RunFit:
    """The run's fit (OLS, or AR(1) refitted from the pass's summaries), consuming ``ols``."""
    names, noise_model = list(design.matrix.columns), settings.model.noise_model
    with np.errstate(divide="ignore", invalid="ignore"):
        return fit_from_ols(
            matrix, ols, names, noise_model, AR1_BINS, thread_budget(), consume=True
        )


def log_fit(
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
