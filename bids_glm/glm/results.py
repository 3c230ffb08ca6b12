"""Result containers of the GLM engine: one run's fit, and one contrast's statistical maps.

All arrays are over the V in-mask voxels, in the column order of the data matrix that was fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_glm.glm.stats import f_to_p_z, t_to_p_z

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
        t: shape (V,), the contrast estimate ``c @ beta``. F: shape (q, V), a *whitened*
        estimate whose squared norm is the F numerator: on one run ``W @ C @ beta`` with
        ``W = (C cov C^T)^(-1/2)`` (pseudo-inverse square root) of the voxel's bin, as
        nilearn's F ``effect_size``; after fixed effects see `bids_glm.glm.fixed_effects`.
    variance : ndarray, shape (V,), float64
        t: variance of ``effect``, ``c cov c^T * sigma2``. F: the scale such that
        ``stat = sum(effect**2, axis=0) / (dof_num * variance)`` (nilearn's convention): the
        residual variance ``sigma2`` on one run.
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
    estimate : ndarray, shape (q, V), float64, or None
        F only: the unwhitened contrast estimate ``C @ beta`` (combined over runs after
        fixed effects), needed to pool F contrasts over runs. None for t contrasts and for
        results that cannot be pooled further.
    covariance : ndarray, shape (B, q, q), float64, or None
        F only: unscaled covariance matrices of ``estimate``; the covariance of
        ``estimate[:, v]`` is ``covariance[covariance_bin[v]] * variance[v]``. On one run,
        ``B`` is the number of AR noise bins and ``covariance[b] = C cov_b C^T``; after
        precision-weighted fixed effects, ``B = V`` (one matrix per voxel). Stored per bin so
        that a run's F maps stay O(q * V) in memory.
    covariance_bin : ndarray, shape (V,), intp, or None
        Index into ``covariance`` of each voxel.
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
    estimate: np.ndarray | None = None
    covariance: np.ndarray | None = None
    covariance_bin: np.ndarray | None = None

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
        self._check_covariance(n_voxels)

    def _check_covariance(self, n_voxels: int) -> None:
        parts = (self.estimate, self.covariance, self.covariance_bin)
        given = [part is not None for part in parts]
        if not any(given):
            return
        if not all(given):
            raise ValueError(
                "ContrastMaps.estimate, covariance and covariance_bin must be given together"
            )
        if self.stat_type != "F":
            raise ValueError("estimate and covariance are carried by F contrasts only")
        q = self.estimate.shape[0]
        n_bins = self.covariance.shape[0]
        expected = {
            "estimate": (self.estimate.shape, (q, n_voxels)),
            "covariance": (self.covariance.shape, (n_bins, q, q)),
            "covariance_bin": (self.covariance_bin.shape, (n_voxels,)),
        }
        for field_name, (shape, wanted) in expected.items():
            if shape != wanted:
                raise ValueError(f"ContrastMaps.{field_name} has shape {shape}; expected {wanted}")
        if n_voxels and (self.covariance_bin.min() < 0 or self.covariance_bin.max() >= n_bins):
            raise ValueError(
                f"ContrastMaps.covariance_bin must index {n_bins} covariance matrices"
            )

    @classmethod
    def for_t(
        cls,
        name: str,
        effect: np.ndarray,
        variance: np.ndarray,
        stat: np.ndarray,
        dof: float,
        n_runs: int = 1,
    ) -> ContrastMaps:
        """t maps with p and z computed from ``stat`` (tail-exact, see ``stats``)."""
        p, z = t_to_p_z(stat, dof)
        return cls(name, "t", effect, variance, stat, z, p, float(dof), n_runs=n_runs)

    @classmethod
    def for_f(
        cls,
        name: str,
        effect: np.ndarray,
        variance: np.ndarray,
        stat: np.ndarray,
        dof_num: float,
        dof: float,
        n_runs: int = 1,
        **pooling: np.ndarray,
    ) -> ContrastMaps:
        """F maps with p and z computed from ``stat``; ``pooling`` as the F fields."""
        p, z = f_to_p_z(stat, dof_num, dof)
        return cls(
            name,
            "F",
            effect,
            variance,
            stat,
            z,
            p,
            float(dof),
            dof_num=float(dof_num),
            n_runs=n_runs,
            **pooling,
        )

    @property
    def n_voxels(self) -> int:
        """Number of voxels V."""
        return self.stat.shape[0]

    @property
    def poolable(self) -> bool:
        """Whether an F contrast carries the estimate and covariance that pooling needs."""
        return self.estimate is not None

    def estimate_covariance(self, voxels: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Covariance matrices of ``estimate`` for some voxels (F contrasts).

        Parameters
        ----------
        voxels : slice or index array
            Voxels to return (all by default).

        Returns
        -------
        ndarray, shape (k, q, q), float64
            ``covariance[covariance_bin[v]] * variance[v]`` for each selected voxel.

        Raises
        ------
        ValueError
            When the maps carry no covariance (t contrasts, or F maps that cannot be pooled).
        """
        if not self.poolable:
            raise ValueError(
                f"{self.stat_type} contrast {self.name!r} carries no estimate covariance"
            )
        unit = self.covariance[self.covariance_bin[voxels]]
        return unit * self.variance[voxels][:, np.newaxis, np.newaxis]
