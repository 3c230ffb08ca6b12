"""Agreement of the SPM12 modules with SPM12 r7771 on every ``spm12_planted`` model.

    python benchmarks/spm12_agreement.py [MODEL ...]

Fits each reference model from its BIDS inputs (as ``tests/test_spm12_estimation.py`` does)
and prints, per model: max |dt| over the t contrasts and the fraction of voxels within 1e-3,
max relative F, ResMS and beta differences, |d erdf|, max |d h| and the ReML pool size.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from spm12_reference import MODELS, fit_reference_model

from bids_glm.glm.spm_contrasts import f_contrast, t_contrast


def agreement(name: str) -> str:
    """One line of figures for one reference model."""
    started = time.perf_counter()
    model = fit_reference_model(name)
    elapsed_s = time.perf_counter() - started
    reference, fit, mask = model.reference, model.fit, model.data.mask
    export = reference.export
    t_errors, f_error = [], 0.0
    for number, contrast in enumerate(export["xCon"], start=1):
        weights = np.asarray(contrast["c"], dtype=float)
        if contrast["STAT"] == "T":
            spm_t = reference.image(f"spmT_{number:04d}")[mask]
            t_errors.append(np.abs(t_contrast(weights, fit).t - spm_t))
        else:
            spm_f = reference.image(f"spmF_{number:04d}")[mask]
            f_error = np.abs(f_contrast(weights, fit).f - spm_f).max() / np.abs(spm_f).max()
    t_error = np.concatenate(t_errors)
    res_ms = reference.image("ResMS")[mask]
    betas = np.stack(
        [reference.image(f"beta_{k + 1:04d}")[mask] for k in range(fit.betas.shape[0])]
    )
    beta_error = (np.abs(fit.betas - betas).max(axis=1) / np.abs(betas).max(axis=1)).max()
    line = (
        f"{name:<18} max|dt| {t_error.max():.1e}  within1e-3 {np.mean(t_error <= 1e-3):.4f}  "
        f"F {f_error:.1e}  ResMS {np.max(np.abs(fit.res_ms - res_ms) / res_ms):.1e}  "
        f"beta {beta_error:.1e}  |d erdf| {abs(fit.model.erdf - export['xX']['erdf']):.1e}"
    )
    if model.noise is not None:
        h_error = np.abs(model.noise.hyperparameters - np.asarray(export["xVi"]["h"])).max()
        line += f"  |d h| {h_error:.1e}  pool {model.noise.pool.n_voxels}"
    return line + f"  ({elapsed_s:.1f} s)"


if __name__ == "__main__":
    for model_name in sys.argv[1:] or MODELS:
        print(agreement(model_name), flush=True)
