"""Features of BIDS Stats Models that bids-glm does not run, named before any other check.

A Session node, ``Model.Formula``, variance components, a low-pass filter, a Transformer other
than ``pybids-transforms-v1``, an unknown transformation or one that is unsafe or samples on a
grid of its own: a model using one cannot run, whatever else is fixed in it.
"""

from __future__ import annotations

from typing import Any

from bids_glm.inputs.smdl.model import JsonChecker

TRANSFORMER = "pybids-transforms-v1"

SUPPORTED_TRANSFORMATIONS = (
    "And",
    "Assign",
    "Convolve",
    "Copy",
    "Delete",
    "Demean",
    "DropNA",
    "Factor",
    "Group",
    "Lag",
    "Not",
    "Or",
    "Orthogonalize",
    "Product",
    "Rename",
    "Replace",
    "Scale",
    "Select",
    "Split",
    "Sum",
    "Threshold",
)
_REFUSED_TRANSFORMATIONS = {
    "Filter": "it evaluates a pandas query string, and bids-glm never evaluates user text",
    "ToDense": "it samples events on a grid of its own, not the scan grid",
    "Resample": "it resamples variables on a grid of its own, not the scan grid",
}
_UNSUPPORTED_OPTIONS = {
    "LowPassFilterCutoffHz": "low-pass filtering is not supported",
    "ReplaceVariables": "replacing design columns by voxel-wise series is not supported",
    "Mask": "Options.Mask is not supported (use --mask)",
    "Aggregate": "aggregating voxels within a mask is not supported",
}
_UNSUPPORTED_MODEL_FIELDS = {
    "Formula": "Model.Formula (Wilkinson formulas) is not supported; list the columns in X",
    "VarianceComponents": "Model.VarianceComponents (mixed-effects models) is not supported",
    "ErrorDistribution": "Model.ErrorDistribution is not supported",
}


def refuse_unsupported(document: Any, check: JsonChecker) -> None:
    """Fail on the first feature of ``document`` that bids-glm does not run.

    Parameters
    ----------
    document : object
        The parsed JSON, not yet checked (anything malformed is left to the field checks).
    check : JsonChecker
        Raises the ``ModelError`` naming the field and the reason.
    """
    nodes = document.get("Nodes") if isinstance(document, dict) else None
    for i, node in enumerate(nodes if isinstance(nodes, list) else []):
        if not isinstance(node, dict):
            continue
        path = f"Nodes[{i}]"
        if str(node.get("Level", "")).lower() == "session":
            check.fail(
                f"{path}.Level",
                "Level 'Session' is not supported; use a Subject node "
                'with GroupBy ["subject", "session", "contrast"]',
            )
        model = node.get("Model") if isinstance(node.get("Model"), dict) else {}
        for key, reason in _UNSUPPORTED_MODEL_FIELDS.items():
            if key in model:
                check.fail(f"{path}.Model.{key}", reason)
        options = model.get("Options") if isinstance(model.get("Options"), dict) else {}
        for key, reason in _UNSUPPORTED_OPTIONS.items():
            if key in options and not (key == "Aggregate" and options[key] == "none"):
                check.fail(f"{path}.Model.Options.{key}", reason)
        transformations = node.get("Transformations")
        if isinstance(transformations, dict):
            transformer = transformations.get("Transformer", TRANSFORMER)
            if transformer != TRANSFORMER:
                check.fail(
                    f"{path}.Transformations.Transformer",
                    f"Transformer {transformer!r} is not supported; expected {TRANSFORMER!r}",
                )
            instructions = transformations.get("Instructions")
            for k, item in enumerate(instructions if isinstance(instructions, list) else []):
                name = item.get("Name") if isinstance(item, dict) else None
                where = f"{path}.Transformations.Instructions[{k}].Name"
                if name in _REFUSED_TRANSFORMATIONS:
                    check.fail(
                        where,
                        f"transformation {name} is not supported: "
                        f"{_REFUSED_TRANSFORMATIONS[name]}",
                    )
                if isinstance(name, str) and name not in SUPPORTED_TRANSFORMATIONS:
                    check.fail(
                        where,
                        f"unknown transformation {name!r}; supported: "
                        f"{', '.join(SUPPORTED_TRANSFORMATIONS)}",
                    )
