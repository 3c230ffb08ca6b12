"""Fixed-effects combination of one t contrast over runs.

Two weightings, both with ``dof = sum of run dofs`` and ``t = effect / sqrt(variance)``:

* ``"precision"`` (default): ``w_r = 1 / var_r``, ``variance = 1 / sum_r w_r``,
  ``effect = variance * sum_r w_r effect_r``.
* ``"unweighted"``: nilearn 0.14's multi-run behaviour (``FirstLevelModel.compute_contrast``
  adds the run contrasts and multiplies by ``1 / n_runs``; ``compute_fixed_effects`` with
  ``precision_weighted=False`` is the same): ``effect = mean_r effect_r``,
  ``variance = sum_r var_r / n_runs**2``.

Run variances are floored at ``1e-16`` first, as nilearn's ``compute_fixed_effects`` does, so
voxels with zero variance (empty data) give finite maps.

F contrasts are not combined: their maps hold whitened effects whose covariance differs between
runs, so neither sum is an F statistic (nilearn only offers an approximation). Combine the t
contrasts of the F's rows instead, or fit the runs in one model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bids_glm.glm.results import ContrastMaps
from bids_glm.glm.stats import t_to_p_z

WEIGHTINGS = ("precision", "unweighted")
_VARIANCE_FLOOR = 1e-16


def _validate(maps: Sequence[ContrastMaps], weighting: str, name: str | None) -> str:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}; received {weighting!r}")
    if len(maps) == 0:
        raise ValueError("fixed effects need at least one run's ContrastMaps; received none")
    stat_types = sorted({m.stat_type for m in maps})
    if len(stat_types) > 1:
        raise ValueError(f"cannot combine contrasts of different types: {stat_types}")
    if stat_types == ["F"]:
        raise NotImplementedError(
            "fixed effects of F contrasts are not implemented: the per-run F maps hold "
            "whitened effects with run-specific covariances, which cannot be pooled exactly; "
            "combine the t contrasts of the F's rows, or fit the runs in one model"
        )
    shapes = sorted({m.effect.shape for m in maps})
    if len(shapes) > 1:
        raise ValueError(f"cannot combine maps of different shapes: {shapes}")
    if name is not None:
        return name
    names = sorted({m.name for m in maps})
    if len(names) > 1:
        raise ValueError(f"cannot combine differently named contrasts {names}; pass name=...")
    return names[0]


def fixed_effects(
    maps: Sequence[ContrastMaps], weighting: str = "precision", name: str | None = None
) -> ContrastMaps:
    """Combine one t contrast over runs with a fixed-effects model.

    Parameters
    ----------
    maps : sequence of ContrastMaps
        The same t contrast on each run (same number of voxels).
    weighting : {"precision", "unweighted"}
        Inverse-variance weighting, or nilearn's unweighted multi-run average.
    name : str or None
        Name of the result; None takes the runs' common name.

    Returns
    -------
    ContrastMaps
        t maps with ``dof`` the sum of the runs' dofs and ``n_runs`` the total runs combined.

    Raises
    ------
    ValueError
        For an empty sequence, mixed t/F types, mixed shapes, differing names without
        ``name``, or an unknown weighting.
    NotImplementedError
        For F contrasts.
    """
    name = _validate(maps, weighting, name)
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
    dof = float(sum(m.dof for m in maps))
    p, z = t_to_p_z(stat, dof)
    return ContrastMaps(
        name=name,
        stat_type="t",
        effect=effect,
        variance=variance,
        stat=stat,
        z=z,
        p=p,
        dof=dof,
        n_runs=sum(m.n_runs for m in maps),
    )
