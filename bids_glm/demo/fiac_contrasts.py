"""The contrasts of nilearn's FIAC example, and the ``bids-glm`` arguments that run them.

Conditions are FIAC's cells in nipy's order: SSt (same sentence, same speaker), SSp (same
sentence, different speaker), DSt (different sentence, same speaker), DSp (different
sentence, different speaker); the demo's designs put them first, in this order, so the
example's numeric vectors weigh them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CONDITIONS = ("SSt", "SSp", "DSt", "DSp")

#: The contrasts of nilearn's FIAC example over (SSt, SSp, DSt, DSp). Its "Deactivation"
#: and "Effects_of_interest" also weigh a fifth column of the FIAC design (a regressor this
#: four-condition design does not have): here they weigh the four conditions only.
T_CONTRASTS = {
    "SStSSp_minus_DStDSp": [1, 0, 0, -1],
    "DStDSp_minus_SStSSp": [-1, 0, 0, 1],
    "DSt_minus_SSt": [-1, -1, 1, 1],
    "DSp_minus_SSp": [-1, 1, -1, 1],
    "DSt_minus_SSt_for_DSp": [0, -1, 0, 1],
    "DSp_minus_SSp_for_DSt": [0, 0, -1, 1],
    "Deactivation": [-1, -1, -1, -1],
}
F_CONTRASTS = {"Effects_of_interest": np.eye(len(CONDITIONS), dtype=int).tolist()}


def vector_text(values: list) -> str:
    """A vector or matrix as compact text: ``[-1,-1,1,1]``, ``[[1,0],[0,1]]``."""
    return json.dumps(values, separators=(",", ":"))


def expression_text(weights: list[int]) -> str:
    """A weight vector over :data:`CONDITIONS` as a contrast expression (``DSt - SSt``)."""
    terms = []
    for condition, weight in zip(CONDITIONS, weights, strict=True):
        if weight == 0:
            continue
        sign = "-" if weight < 0 else "+"
        size = "" if abs(weight) == 1 else f"{abs(weight)} * "
        terms.append(f"{sign} {size}{condition}")
    text = " ".join(terms)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


def analysis_arguments(design_dir: Path) -> list[str]:
    """``bids-glm`` options of the example's analysis: the designs given, numeric contrasts.

    Needs ``--design-dir`` and numeric ``--contrast``/``--f-contrast`` (issue 16, items 1-2).
    """
    arguments = ["--design-dir", str(design_dir)]
    for name, weights in T_CONTRASTS.items():
        arguments += ["--contrast", f"{name}={vector_text(weights)}"]
    for name, matrix in F_CONTRASTS.items():
        arguments += ["--f-contrast", f"{name}={vector_text(matrix)}"]
    return [*arguments, "--report-run-maps"]


def expression_arguments() -> list[str]:
    """The same contrasts as expressions over condition names (no ``--design-dir`` needed)."""
    arguments = []
    for name, weights in T_CONTRASTS.items():
        arguments += ["--contrast", f"{name}={expression_text(weights)}"]
    for name, matrix in F_CONTRASTS.items():
        rows = "; ".join(expression_text(row) for row in matrix)
        arguments += ["--f-contrast", f"{name}={rows}"]
    return arguments
