"""Result containers of the GLM engine: one run's fit, and one contrast's statistical maps.

All arrays are over the V in-mask voxels, in the column order of the data matrix that was fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOISE_MODELS = ("ols", "ar1")
STAT_TYPES = ("t", "F")


@dataclass(frozen=True)
class RunFit:
    """One run's fitted first-level GLM.

    Attributes
    ----------
    column_names : tuple of str
        Names of the p design-matrix columns, in order.
    noise_model : str
        ``"ols"`` or ``"ar1"``.
    beta : ndarray, shape (p, V), float64
        Parameter estimates (of the prewhitened model for ``"ar1"``).
    sigma2 : ndarray, shape (V,), float64
        Residual variance: sum of squared (whitened) residuals / (n_scans - p), as nilearn's
        ``dispersion`` (equal to ``RSS / dof`` when the design has full column rank).
    dof : float
        Residual degrees of freedom, ``n_scans - rank(X)``.
    bin_rho : ndarray, shape (B,), float64
        AR(1) coefficient used to whiten each noise bin (truncated to multiples of
        ``1 / n_bins``), ascending; ``[0.0]`` (one bin) for OLS.
    bin_cov : ndarray, shape (B, p, p), float64
        Unscaled parameter covariance of each bin, ``pinv(wX) @ pinv(wX).T`` with ``wX`` the
        design whitened with that bin's coefficient.
    voxel_bin : ndarray, shape (V,), intp
        Index into ``bin_rho``/``bin_cov`` of each voxel's bin.
    ar1 : ndarray, shape (V,), float64, or None
        Unbinned Yule-Walker AR(1) estimate of each voxel from the OLS residuals (0 where the
        centred residuals are identically zero); ``None`` for OLS.
    r_squared : ndarray, shape (V,), float64
        ``var(wX beta) / var(wY)`` over time per voxel (nilearn's ``r_square``; "pseudo" R^2 for
        AR(1)); 0 where the (whitened) data are constant.
    """

    column_names: tuple[str, ...]
    noise_model: str
    beta: np.ndarray
    sigma2: np.ndarray
    dof: float
    bin_rho: np.ndarray
    bin_cov: np.ndarray
    voxel_bin: np.ndarray
    ar1: np.ndarray | None
    r_squared: np.ndarray

    def __post_init__(self) -> None:
        p, n_voxels = self.beta.shape
        n_bins = self.bin_rho.shape[0]
        if self.noise_model not in NOISE_MODELS:
            raise ValueError(
                f"noise_model must be one of {NOISE_MODELS}; received {self.noise_model!r}"
            )
        if len(self.column_names) != p:
            raise ValueError(f"{len(self.column_names)} column names for a beta with {p} rows")
        expected = {
            "sigma2": (self.sigma2.shape, (n_voxels,)),
            "voxel_bin": (self.voxel_bin.shape, (n_voxels,)),
            "r_squared": (self.r_squared.shape, (n_voxels,)),
            "bin_cov": (self.bin_cov.shape, (n_bins, p, p)),
        }
        if self.ar1 is not None:
            expected["ar1"] = (self.ar1.shape, (n_voxels,))
        for field_name, (shape, wanted) in expected.items():
            if shape != wanted:
                raise ValueError(f"RunFit.{field_name} has shape {shape}; expected {wanted}")

    @property
    def n_voxels(self) -> int:
        """Number of voxels V."""
        return self.beta.shape[1]

    @property
    def n_regressors(self) -> int:
        """Number of design columns p."""
        return self.beta.shape[0]


@dataclass(frozen=True)
class ContrastMaps:
    """Statistical maps of one contrast, on one run or combined over runs.

    Attributes
    ----------
    name : str
        Contrast name.
    stat_type : str
        ``"t"`` or ``"F"``.
    effect : ndarray, float64
        t: shape (V,), the contrast estimate ``c @ beta``. F: shape (q, V), the *whitened*
        contrast estimate ``W @ C @ beta`` with ``W = (C cov C^T)^(-1/2)`` (pseudo-inverse
        square root) of the voxel's bin, as nilearn's F ``effect_size``.
    variance : ndarray, shape (V,), float64
        t: variance of ``effect``, ``c cov c^T * sigma2``. F: the residual variance ``sigma2``,
        so that ``stat = sum(effect**2, axis=0) / (dof_num * variance)`` (nilearn's convention).
    stat : ndarray, shape (V,), float64
        t or F statistic.
    z : ndarray, shape (V,), float64
        z-score with the same upper-tail probability as ``stat``.
    p : ndarray, shape (V,), float64
        One-sided upper-tail p-value of ``stat``.
    dof : float
        Residual (denominator) degrees of freedom; summed over runs for fixed effects.
    dof_num : float
        Numerator degrees of freedom of an F test (rank of ``C cov C^T``); 1 for t.
    n_runs : int
        Number of runs combined (1 for a single run).
    """

    name: str
    stat_type: str
    effect: np.ndarray
    variance: np.ndarray
    stat: np.ndarray
    z: np.ndarray
    p: np.ndarray
    dof: float
    dof_num: float = 1.0
    n_runs: int = 1

    def __post_init__(self) -> None:
        if self.stat_type not in STAT_TYPES:
            raise ValueError(f"stat_type must be 't' or 'F'; received {self.stat_type!r}")
        n_voxels = self.stat.shape[0] if self.stat.ndim == 1 else -1
        effect_ndim = 1 if self.stat_type == "t" else 2
        if self.effect.ndim != effect_ndim or self.effect.shape[-1] != n_voxels:
            raise ValueError(
                f"{self.stat_type} contrast {self.name!r}: effect has shape "
                f"{self.effect.shape}; expected {'(V,)' if effect_ndim == 1 else '(q, V)'} "
                f"with V = {n_voxels}"
            )
        for field_name in ("variance", "z", "p"):
            shape = getattr(self, field_name).shape
            if shape != (n_voxels,):
                raise ValueError(
                    f"ContrastMaps.{field_name} has shape {shape}; expected ({n_voxels},)"
                )

    @property
    def n_voxels(self) -> int:
        """Number of voxels V."""
        return self.stat.shape[0]
