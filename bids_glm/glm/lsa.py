"""LSA estimates (one GLM with a regressor per trial), a block of voxels at a time.

The LSA design has a column per trial, so its fit keeps ``2 q + 5`` float64 numbers per voxel
(q columns: the OLS estimates and, for AR(1), the lag products) until the AR(1) bins are
known, which depend on every voxel's residual moments (their global mean): for 240 trials
on the MNI brain, ~1.4 GB. Here the data are read once, a block of voxels at a time, those
summaries kept in arrays that may be files (`bids_glm.runtime.spill.scratch_array`), and
each block then refitted with the bins' whitened designs (made once) from its summaries:
the memory is the trials' estimates (and variances) and one block, and the pages of the
summaries the kernel keeps. Each voxel's estimate is computed as `bids_glm.glm.fit.fit_glm`
computes it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from bids_glm.glm.ar import bin_ar1, yule_walker_ar1
from bids_glm.glm.ar_refit import (
    VoxelFits,
    ar1_voxel_fits,
    ols_voxel_fits,
    whitened_operators,
)
from bids_glm.glm.fit import REFIT_CHUNK_VOXELS, check_model
from bids_glm.glm.ols import OlsPass, design_operators, design_rank, ols_pass, voxel_chunks
from bids_glm.glm.single_trial import TrialEstimates, TrialLayout
from bids_glm.runtime.spill import scratch_array
from bids_glm.runtime.threads import thread_budget

# the per-voxel summaries of one block (2 q + 5 float64 a voxel), and its data as float32
SUMMARY_BLOCK_BYTES = 64 * 2**20
DATA_BLOCK_BYTES = 64 * 2**20
PASS_CHUNK_VOXELS = 4096  # voxels per chunk of a pass, as `fit_glm`'s default


def lsa_fit(
    lsa: np.ndarray,
    data: np.ndarray,
    layout: TrialLayout,
    noise_model: str = "ar1",
    n_bins: int = 100,
    variance: bool = False,
    scratch_dir: Path | None = None,
) -> TrialEstimates:
    """Every trial's LSA estimate (and variance): the LSA design fitted as `fit_glm` does.

    Parameters
    ----------
    lsa : ndarray, shape (n, q)
        The LSA design (fitted rows only).
    data : ndarray or array-like, shape (n, V)
        Scaled data; read only as ``data[:, start:stop]``.
    layout : TrialLayout
    noise_model : {"ar1", "ols"}
    n_bins : int
        AR(1) bins per unit of the coefficient.
    variance : bool
        Return each estimate's variance too (for t statistics).
    scratch_dir : Path, optional
        Where the (n_trials, V) results are held in a file when large.

    Returns
    -------
    TrialEstimates
    """
    design = np.asarray(lsa, dtype=np.float64)
    check_model(design, [f"column{k}" for k in range(design.shape[1])], noise_model, n_bins)
    n_scans, n_voxels = data.shape
    trials = np.asarray(layout.trial_columns, dtype=np.intp)
    operators = design_operators(design)
    blocks = list(voxel_chunks(n_voxels, _block_voxels(design.shape[1], n_scans)))
    n_threads = thread_budget()
    beta = scratch_array((trials.size, n_voxels), np.float64, scratch_dir)
    variances = scratch_array(beta.shape, np.float64, scratch_dir) if variance else None

    def keep(block: slice, fits: VoxelFits, trial_cov: np.ndarray, bins: np.ndarray) -> None:
        """The block's trial estimates and variances (``trial_cov``: (bins, trials))."""
        beta[:, block] = fits.beta[trials]
        if variances is not None:
            variances[:, block] = trial_cov[bins].T * (fits.rss / (n_scans - design.shape[1]))

    def ols_of(block: slice, ar1: bool) -> OlsPass:
        return ols_pass(operators, data[:, block], PASS_CHUNK_VOXELS, ar1, n_threads)

    if noise_model == "ols":
        trial_cov = operators.cov[np.newaxis][:, trials, trials]  # one bin
        for block in blocks:
            bins = np.zeros(block.stop - block.start, dtype=np.intp)
            keep(block, ols_voxel_fits(design, ols_of(block, False)), trial_cov, bins)
    else:
        moments, products = _summaries(ols_of, blocks, design.shape[1], scratch_dir)
        bin_rho, voxel_bin = bin_ar1(yule_walker_ar1(moments, n_scans), int(n_bins))
        bin_operators = whitened_operators(design, bin_rho)
        trial_cov = np.stack([operator.cov for operator in bin_operators])[:, trials, trials]
        for index, block in enumerate(blocks):
            size = block.stop - block.start
            beta_ols, lag_cross = products[index, :, :, :size]
            fits = ar1_voxel_fits(
                design,
                OlsPass(beta_ols, moments[:, block], lag_cross),
                bin_rho,
                voxel_bin[block],
                bin_operators,
                REFIT_CHUNK_VOXELS,
                n_threads,
                overwrite_ols=True,
            )
            keep(block, fits, trial_cov, voxel_bin[block])
    dof = float(n_scans - design_rank(design))
    return TrialEstimates(beta=beta, variance=variances, dof=np.full(trials.size, dof))


def _summaries(
    ols_of: Callable[[slice, bool], OlsPass],
    blocks: list[slice],
    n_columns: int,
    scratch_dir: Path | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Every voxel's OLS summaries with the lag products, from one pass over the blocks.

    Returns the residual moments, (5, V), and the OLS estimates and lag products of each
    block, (blocks, 2, q, block voxels), in a scratch array: each block's contiguous, so a
    block is written, and read back to be refitted, in one piece even from a file.
    """
    n_voxels = blocks[-1].stop
    moments = np.empty((5, n_voxels))
    widest = max(block.stop - block.start for block in blocks)
    products = scratch_array((len(blocks), 2, n_columns, widest), np.float64, scratch_dir)
    for index, block in enumerate(blocks):
        ols = ols_of(block, True)
        size = block.stop - block.start
        products[index, 0, :, :size], products[index, 1, :, :size] = ols.beta, ols.lag_cross
        moments[:, block] = ols.moments
    return moments, products


def _block_voxels(n_columns: int, n_scans: int) -> int:
    """Voxels per block: `SUMMARY_BLOCK_BYTES` of summaries, `DATA_BLOCK_BYTES` of data."""
    by_summaries = SUMMARY_BLOCK_BYTES // ((2 * n_columns + 5) * 8)
    by_data = DATA_BLOCK_BYTES // (4 * n_scans)
    return int(max(min(by_summaries, by_data), PASS_CHUNK_VOXELS))
