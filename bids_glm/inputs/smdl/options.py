"""Settings a Run node states, as bids-glm settings overrides.

``Model.HRF`` or Convolve give the HRF; ``Options.HighPassFilterCutoffHz`` the cosine
cut-off; the bids-glm Options that ``bids_glm/derivatives/stats_model.py`` writes (NoiseModel,
SignalScaling, SmoothingFWHMmm, DriftModel, DriftOrder, DummyScans, FixedEffects, MaskCombine,
SliceTimeRef, Confounds) the matching ``ModelSettings`` / ``Settings`` fields; the explicit
contrasts ``contrasts`` and ``f_contrasts``. Loading bids-glm's effective model therefore
gives back the settings of the run that wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bids_glm.design.contrast_options import ContrastSpec, FContrastSpec
from bids_glm.image.mask_rule import MaskRule, parse_mask_rule
from bids_glm.inputs.smdl.model import INTERCEPT, ModelError, Node
from bids_glm.inputs.smdl.transformations import convolution

_CHOICES = {
    "NoiseModel": ("noise_model", ("ols", "ar1")),
    "SignalScaling": ("signal_scaling", ("percent", "global", "none")),
    "DriftModel": ("drift_model", ("cosine", "polynomial", "none")),
    "FixedEffects": ("fixed_effects", ("precision", "unweighted")),
}


def expression(weights: Mapping[str, float]) -> str:
    """A contrast's weights written in bids-glm's contrast grammar, e.g. ``a - 0.5*b``."""
    terms = []
    for column, weight in weights.items():
        name = column if column.replace("_", "a").replace(".", "a").isalnum() else f"`{column}`"
        size = "" if abs(weight) == 1 else f"{abs(weight):.17g}*"
        sign = "-" if weight < 0 else "+"
        terms.append(f"{sign} {size}{name}")
    text = " ".join(terms) or "0"
    return text[2:] if text.startswith("+ ") else text


def node_overrides(node: Node) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings a Run node states: (ModelSettings fields, other Settings fields).

    ``Model.HRF`` or Convolve give ``hrf_model`` (and ``fir_delays_scans``);
    ``HighPassFilterCutoffHz`` gives ``high_pass_hz``; the bids-glm Options give
    ``noise_model``, ``signal_scaling``, ``smoothing_fwhm_mm``, ``drift_model``,
    ``drift_order``, ``dummy_scans``, ``fixed_effects``, ``slice_time_ref`` and ``confounds``
    (a parsed strategy), and ``mask_combine`` (a ``MaskRule``) for Settings; the explicit
    contrasts give ``contrasts`` and ``f_contrasts`` (weights over the ConditionList names,
    ``1`` as ``constant``). Apply with ``dataclasses.replace(settings.model, **model)``.

    Raises
    ------
    ModelError
        An option's value is not one bids-glm accepts (the message names it).
    """
    path = f"{node.origin}.Model.Options"
    options, model, settings = node.options, {}, {}
    for item in node.transformations:
        if item["Name"] == "Convolve":
            model["hrf_model"], delays = convolution(item)
            model.update({"fir_delays_scans": delays} if delays else {})
    if node.hrf is not None:
        model["hrf_model"] = node.hrf.model
        model.update(
            {"fir_delays_scans": node.hrf.fir_delays_scans} if node.hrf.fir_delays_scans else {}
        )
    for key, (field, choices) in _CHOICES.items():
        if key in options:
            if options[key] not in choices:
                raise ModelError(f"{path}.{key}: expected one of {choices}, got {options[key]!r}")
            model[field] = options[key]
    numbers = {
        "HighPassFilterCutoffHz": ("high_pass_hz", float, 0.0, None),
        "SmoothingFWHMmm": ("smoothing_fwhm_mm", float, 0.0, None),
        "SliceTimeRef": ("slice_time_ref", float, 0.0, 1.0),
        "DriftOrder": ("drift_order", int, 0, None),
        "DummyScans": ("dummy_scans", int, 0, None),
    }
    for key, (field, kind, low, high) in numbers.items():
        if key in options:
            model[field] = _number(options[key], f"{path}.{key}", kind, low, high)
    if "Confounds" in options:
        model["confounds"] = _strategy(options["Confounds"], f"{path}.Confounds")
    if "MaskCombine" in options:
        settings["mask_combine"] = _mask_rule(options["MaskCombine"], f"{path}.MaskCombine")
    t_specs, f_specs = [], []
    for contrast in node.contrasts:
        names = ["constant" if c == INTERCEPT else c for c in contrast.condition_list]
        rows = [
            {n: w for n, w in zip(names, row, strict=True) if w != 0} for row in contrast.weights
        ]
        if contrast.test == "F":
            f_specs.append(
                FContrastSpec(contrast.name, "; ".join(map(expression, rows)), tuple(rows))
            )
        else:
            t_specs.append(ContrastSpec(contrast.name, expression(rows[0]), rows[0]))
    model.update(contrasts=tuple(t_specs), f_contrasts=tuple(f_specs))
    return model, settings


def _number(value, path: str, kind: type, low: float, high: float | None):
    ok = not isinstance(value, bool) and isinstance(value, int if kind is int else int | float)
    if not ok or value < low or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ModelError(
            f"{path}: expected {'an integer' if kind is int else 'a number'} "
            f"{bounds}, got {value!r}"
        )
    return kind(value)


def _strategy(items, path: str):
    from bids_glm.inputs.confounds import ConfoundError, parse_confound_strategy

    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ModelError(f"{path}: expected a list of --confounds items, got {items!r}")
    try:
        return parse_confound_strategy(items)
    except ConfoundError as err:
        raise ModelError(f"{path}: {err}") from None


def _mask_rule(value, path: str) -> MaskRule:
    try:
        return parse_mask_rule(str(value))
    except ValueError as err:
        raise ModelError(f"{path}: {err}") from None
