"""Fixed-effects combination of one t or F contrast over runs.

Every result has ``dof = sum of run dofs`` and ``n_runs`` the number of runs combined.

t contrasts (``t = effect / sqrt(variance)``):

* ``"precision"`` (default): ``w_r = 1 / var_r``, ``variance = 1 / sum_r w_r``,
  ``effect = variance * sum_r w_r effect_r``.
* ``"unweighted"``: nilearn 0.14's multi-run behaviour (``FirstLevelModel.compute_contrast``
  adds the run contrasts and multiplies by ``1 / n_runs``; ``compute_fixed_effects`` with
  ``precision_weighted=False`` is the same): ``effect = mean_r effect_r``,
  ``variance = sum_r var_r / n_runs**2``.

Run variances of t contrasts are floored at ``1e-16`` first, as nilearn's
``compute_fixed_effects`` does, so voxels with zero variance (empty data) give finite maps.

F contrasts (q rows), per voxel, with each run's unwhitened estimate ``b_r = C beta_r`` and its
covariance ``V_r = C cov_r C^T sigma2_r`` (carried by the run's `ContrastMaps`):

* ``"precision"``: the generalised least-squares pooling of the ``b_r``,
  ``S = sum_r V_r^+``, ``V = S^+``, ``b = V sum_r V_r^+ b_r`` and ``F = b^T S b / r`` with ``r``
  the largest rank of ``S`` over voxels (pseudo-inverses with eigenvalues below ``1e-10`` times
  the largest dropped, so redundant or inestimable rows reduce ``r`` instead of failing). A run
  with zero residual variance at a voxel (constant data) has ``V_r^+ = 0`` there: it adds no
  information, and a voxel without any gets ``F = 0``. For ``q = 1`` this is the square of the
  precision-weighted t. The result's ``effect`` is the whitened
  ``S^(1/2) b`` (so ``F = sum(effect**2) / r``), its ``variance`` is 1, and its
  ``estimate``/``covariance`` are ``b`` and ``V`` (one matrix per voxel), so it can be pooled
  again.
* ``"unweighted"``: nilearn 0.14's multi-run F, an approximation: the runs' whitened effects
  are averaged, ``effect = mean_r effect_r``, ``variance = sum_r sigma2_r / n_runs**2`` and
  ``F = sum(effect**2) / (r * max(variance, 1e-50))`` with ``r`` the runs' numerator dof
  (``q`` for full-rank contrasts, as nilearn). It carries no estimate covariance.

The F pooling is vectorised over voxel chunks: each run's ``V_r^+`` is its bin's
pseudo-inverse divided by ``sigma2_r``, and one batched eigendecomposition of ``S`` per voxel
gives ``V``, ``b`` and the whitened effect.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bids_glm.glm.results import ContrastMaps

WEIGHTINGS = ("precision", "unweighted")
_VARIANCE_FLOOR = 1e-16
_F_VARIANCE_FLOOR = 1e-50
_RANK_RTOL = 1e-10


def _validate(maps: Sequence[ContrastMaps], weighting: str, name: str | None) -> str:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}; received {weighting!r}")
    if len(maps) == 0:
        raise ValueError("fixed effects need at least one run's ContrastMaps; received none")
    stat_types = sorted({m.stat_type for m in maps})
    if len(stat_types) > 1:
        raise ValueError(f"cannot combine contrasts of different types: {stat_types}")
    shapes = sorted({m.effect.shape for m in maps})
    if len(shapes) > 1:
        raise ValueError(f"cannot combine maps of different shapes: {shapes}")
    if stat_types == ["F"] and weighting == "precision":
        lacking = [index for index, m in enumerate(maps) if not m.poolable]
        if lacking:
            raise ValueError(
                f"precision-weighted F fixed effects need each run's estimate and covariance; "
                f"maps at positions {lacking} carry none (e.g. results of unweighted pooling)"
            )
    if name is not None:
        return name
    names = sorted({m.name for m in maps})
    if len(names) > 1:
        raise ValueError(f"cannot combine differently named contrasts {names}; pass name=...")
    return names[0]


def _t_fixed_effects(maps: Sequence[ContrastMaps], weighting: str, name: str) -> ContrastMaps:
    effects = np.stack([m.effect for m in maps])
    variances = np.maximum(np.stack([m.variance for m in maps]), _VARIANCE_FLOOR)
    if weighting == "precision":
        precisions = 1.0 / variances
        variance = 1.0 / precisions.sum(axis=0)
        effect = variance * np.sum(precisions * effects, axis=0)
    else:
        effect = effects.mean(axis=0)
        variance = variances.mean(axis=0) / len(maps)
    stat = effect / np.sqrt(variance)
    dof = sum(m.dof for m in maps)
    return ContrastMaps.for_t(name, effect, variance, stat, dof, sum(m.n_runs for m in maps))


def _f_unweighted(maps: Sequence[ContrastMaps], name: str) -> ContrastMaps:
    n_maps = len(maps)
    effect = np.sum([m.effect for m in maps], axis=0) / n_maps
    variance = np.sum([m.variance for m in maps], axis=0) / n_maps**2
    dof_num = max(m.dof_num for m in maps)
    dof = float(sum(m.dof for m in maps))
    stat = np.sum(effect**2, axis=0) / dof_num / np.maximum(variance, _F_VARIANCE_FLOOR)
    return ContrastMaps.for_f(
        name, effect, variance, stat, dof_num, dof, sum(m.n_runs for m in maps)
    )


def _psd_spectrum(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched eigendecomposition of PSD matrices (k, q, q).

    Returns the eigenvalues (k, q), the eigenvectors (k, q, q) and the boolean mask (k, q) of
    eigenvalues above ``_RANK_RTOL`` times each matrix's largest one (those a pseudo-inverse
    keeps).
    """
    eigenvalues, eigenvectors = np.linalg.eigh(matrices)
    largest = np.maximum(eigenvalues[:, -1:], 0.0)
    keep = eigenvalues > _RANK_RTOL * largest
    return eigenvalues, eigenvectors, keep


def _kept_power(eigenvalues: np.ndarray, keep: np.ndarray, power: float) -> np.ndarray:
    """``eigenvalues**power`` where kept, 0 elsewhere."""
    return np.where(keep, np.power(np.where(keep, eigenvalues, 1.0), power), 0.0)


def _from_spectrum(eigenvectors: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``U diag(values) U^T`` for each matrix of a batch."""
    return (eigenvectors * values[:, np.newaxis, :]) @ eigenvectors.transpose(0, 2, 1)


def _bin_precisions(maps: ContrastMaps) -> np.ndarray:
    """Pseudo-inverses of a run's unscaled covariance matrices, one per bin (B, q, q)."""
    eigenvalues, eigenvectors, keep = _psd_spectrum(maps.covariance)
    return _from_spectrum(eigenvectors, _kept_power(eigenvalues, keep, -1.0))


def _f_precision(maps: Sequence[ContrastMaps], name: str, chunk_voxels: int) -> ContrastMaps:
    q, n_voxels = maps[0].effect.shape
    # V_r = M_b * s2 per voxel, so V_r^+ = M_b^+ / s2 (0 where s2 = 0: no information)
    bin_precisions = [_bin_precisions(m) for m in maps]
    inverse_scales = [
        np.divide(1.0, m.variance, out=np.zeros(n_voxels), where=m.variance > 0) for m in maps
    ]
    estimate = np.empty((q, n_voxels))
    covariance = np.empty((n_voxels, q, q))
    effect = np.empty((q, n_voxels))
    rank = np.zeros(n_voxels, dtype=np.intp)
    for start in range(0, n_voxels, chunk_voxels):
        chunk = slice(start, min(start + chunk_voxels, n_voxels))
        precision_sum = np.zeros((chunk.stop - start, q, q))
        weighted_sum = np.zeros((chunk.stop - start, q))
        for m, precisions, inverse_scale in zip(maps, bin_precisions, inverse_scales, strict=True):
            precision = precisions[m.covariance_bin[chunk]]
            precision *= inverse_scale[chunk, np.newaxis, np.newaxis]
            precision_sum += precision
            weighted_sum += np.einsum("kij,jk->ki", precision, m.estimate[:, chunk])
        eigenvalues, eigenvectors, keep = _psd_spectrum(precision_sum)
        rotated = np.einsum("kji,kj->ki", eigenvectors, weighted_sum)
        inverse = _kept_power(eigenvalues, keep, -1.0)
        covariance[chunk] = _from_spectrum(eigenvectors, inverse)
        estimate[:, chunk] = np.einsum("kij,kj->ik", eigenvectors, inverse * rotated)
        inverse_sqrt = _kept_power(eigenvalues, keep, -0.5)
        effect[:, chunk] = np.einsum("kij,kj->ik", eigenvectors, inverse_sqrt * rotated)
        rank[chunk] = keep.sum(axis=1)
    dof_num = float(max(int(rank.max()), *(m.dof_num for m in maps)))
    dof = float(sum(m.dof for m in maps))
    stat = np.sum(effect**2, axis=0) / dof_num
    return ContrastMaps.for_f(
        name,
        effect,
        np.ones(n_voxels),
        stat,
        dof_num,
        dof,
        sum(m.n_runs for m in maps),
        estimate=estimate,
        covariance=covariance,
        covariance_bin=np.arange(n_voxels, dtype=np.intp),
    )


def fixed_effects(
    maps: Sequence[ContrastMaps],
    weighting: str = "precision",
    name: str | None = None,
    chunk_voxels: int = 8192,
) -> ContrastMaps:
    """Combine one t or F contrast over runs with a fixed-effects model.

    Parameters
    ----------
    maps : sequence of ContrastMaps
        The same contrast on each run (same type, number of rows and voxels).
    weighting : {"precision", "unweighted"}
        Inverse-(co)variance weighting, or nilearn's unweighted multi-run average.
    name : str or None
        Name of the result; None takes the runs' common name.
    chunk_voxels : int
        Voxels pooled at a time for F contrasts (bounds the (k, q, q) temporaries); the
        result does not depend on it.

    Returns
    -------
    ContrastMaps
        Maps of the same type with ``dof`` the sum of the runs' dofs and ``n_runs`` the total
        runs combined; see the module docstring for each weighting's formulas.

    Raises
    ------
    ValueError
        For an empty sequence, mixed t/F types, mixed shapes, differing names without
        ``name``, an unknown weighting, a non-positive ``chunk_voxels``, or precision-weighted
        F pooling of maps that carry no estimate covariance.
    """
    if int(chunk_voxels) != chunk_voxels or chunk_voxels < 1:
        raise ValueError(f"chunk_voxels must be a positive integer; received {chunk_voxels!r}")
    name = _validate(maps, weighting, name)
    if maps[0].stat_type == "t":
        return _t_fixed_effects(maps, weighting, name)
    if weighting == "unweighted":
        return _f_unweighted(maps, name)
    return _f_precision(maps, name, int(chunk_voxels))
