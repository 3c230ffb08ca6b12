"""The effective model as a BIDS Stats Model (written beside the participants' outputs).

It states, in BIDS Stats Models 1.0.0 terms, what the participant level fitted: a Run node
(regressors, HRF, drift cut-off, contrasts, one dummy contrast per condition), a Subject
node (fixed effects over runs) and a Dataset node (one-sample t). Options without a field
in the specification (noise model, smoothing, scaling, confound strategy, ...) are kept
under the Run node's ``Model.Options`` with their bids-glm names, so the file records
everything needed to repeat the run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from bids_glm import __version__
from bids_glm.derivatives.naming import EFFECTIVE_MODEL_NAME
from bids_glm.derivatives.summary import ResolvedContrast, UnitSummary
from bids_glm.settings import ModelSettings, Settings

LOGGER = logging.getLogger("bids_glm")
HRF_NAMES = {"glover": "Glover", "spm": "SPM", "fir": "FIR", "none": "none"}


def _hrf(model: ModelSettings, conditions: Sequence[str]) -> dict:
    spec = model.hrf_model
    hrf = {"Variables": list(conditions), "Model": HRF_NAMES[spec.base]}
    if spec.time_derivative:
        hrf["TimeDerivative"] = True
    if spec.dispersion_derivative:
        hrf["DispersionDerivative"] = True
    if spec.base == "fir":
        hrf["Parameters"] = {"Delays": list(model.fir_delays_scans)}
    return hrf


def _contrast(name: str, rows: Sequence[Mapping[str, float]], test: str) -> dict:
    """A Run node contrast: the weighted columns in first-seen order, one row for t."""
    columns = list(dict.fromkeys(c for row in rows for c in row))
    weights = [[row.get(c, 0.0) for c in columns] for row in rows]
    return {
        "Name": name,
        "ConditionList": columns,
        "Weights": weights[0] if test == "t" else weights,
        "Test": test,
    }


def _contrasts(model: ModelSettings, resolved: Mapping[str, ResolvedContrast]) -> list[dict]:
    """The user's contrasts; numeric ones with the named weights planning gave them."""
    contrasts = []
    for spec, test in [(s, "t") for s in model.contrasts] + [(s, "F") for s in model.f_contrasts]:
        if spec.numeric is not None:
            if spec.name in resolved:
                contrasts.append(_contrast(spec.name, resolved[spec.name].rows, test))
            continue
        rows = (spec.weights,) if test == "t" else spec.rows
        contrasts.append(_contrast(spec.name, rows, test))
    return contrasts


def _resolved(summaries: Sequence[UnitSummary]) -> dict[str, ResolvedContrast]:
    """Each numeric contrast's named weights, as the first unit recorded them."""
    resolved: dict[str, ResolvedContrast] = {}
    for summary in summaries:
        for contrast in summary.resolved_contrasts:
            first = resolved.setdefault(contrast.name, contrast)
            if first.rows != contrast.rows:
                LOGGER.warning(
                    "contrast %s: its weights fell on other columns in sub-%s (%s) than in an "
                    "earlier unit (%s); the effective model records the earlier",
                    contrast.name,
                    summary.participant,
                    contrast.rows,
                    first.rows,
                )
    return resolved


def model_options(settings: Settings) -> dict:
    """The Run node's ``Model.Options``: bids-glm settings without a specification field."""
    model = settings.model
    options: dict = {
        "NoiseModel": model.noise_model,
        "SignalScaling": model.signal_scaling,
        "SmoothingFWHMmm": model.smoothing_fwhm_mm,
        "DriftModel": model.drift_model,
        "DummyScans": model.dummy_scans,
        "FixedEffects": model.fixed_effects,
        "MaskCombine": str(settings.mask_combine),
    }
    if model.drift_model == "cosine":
        options["HighPassFilterCutoffHz"] = model.high_pass_hz
    if model.drift_model == "polynomial":
        options["DriftOrder"] = model.drift_order
    if model.slice_time_ref is not None:
        options["SliceTimeRef"] = model.slice_time_ref
    if model.design_dir is not None:  # the designs were used as given
        options["DesignDir"] = str(model.design_dir)
    if settings.spm12 is not None:  # --preset spm12: one SPM12 multi-session model
        options["Preset"] = "spm12"
        options["SPM12"] = {
            "Model": "one multi-session GLM (sessions = runs), no fixed effects",
            "SerialCorrelations": "AR(1)" if settings.spm12.serial_correlations else "none",
            "MicrotimeResolution": settings.spm12.fmri_t,
            "MicrotimeOnset": settings.spm12.fmri_t0,
            "HighPassCutoffSeconds": settings.spm12.high_pass_cutoff_s,
        }
    if model.confounds is not None:
        strategy = model.confounds
        options["Confounds"] = [*strategy.presets, *strategy.patterns]
        if strategy.scrub is not None:
            options["Confounds"].append(strategy.scrub.spec)
        if strategy.non_steady_state:
            options["Confounds"].append("non_steady_state")
    return options


def effective_model(
    settings: Settings,
    tasks: Sequence[str],
    conditions: Sequence[str],
    confounds: Sequence[str],
    resolved: Mapping[str, ResolvedContrast] | None = None,
) -> dict:
    """The BIDS Stats Model of what was run.

    Parameters
    ----------
    settings : Settings
        The run's settings.
    tasks, conditions, confounds : sequence of str
        Tasks analysed, condition regressors and confound regressors of the designs.
    resolved : mapping of str to ResolvedContrast, optional
        Numeric contrasts' named weights, by contrast name (numeric contrasts without
        one are left out: their columns are unknown).

    Returns
    -------
    dict
        A BIDS Stats Models 1.0.0 document.
    """
    model = settings.model
    run_node: dict = {
        "Level": "Run",
        "Name": "run",
        "GroupBy": ["run", "session", "subject"],
        "Model": {
            "X": [*conditions, *confounds, 1],
            "Type": "glm",
            "HRF": _hrf(model, conditions),
            "Options": model_options(settings),
            "Software": [{"bids-glm": {"Version": __version__}}],
        },
        "DummyContrasts": {"Contrasts": list(conditions), "Test": "t"},
    }
    contrasts = _contrasts(model, resolved or {})
    if contrasts:
        run_node["Contrasts"] = contrasts
    return {
        "Name": EFFECTIVE_MODEL_NAME,
        "BIDSModelVersion": "1.0.0",
        "Description": "Effective model of a bids-glm run (written by bids-glm).",
        "Input": {"task": sorted(set(tasks))},
        "Nodes": [
            run_node,
            {
                "Level": "Subject",
                "Name": "subject",
                "GroupBy": ["contrast", "session", "subject"],
                "Model": {"X": [1], "Type": "meta"},
                "DummyContrasts": {"Test": "t"},
            },
            {
                "Level": "Dataset",
                "Name": "dataset",
                "GroupBy": ["contrast"],
                "Model": {"X": [1], "Type": "glm"},
                "DummyContrasts": {"Test": "t"},
            },
        ],
        "Edges": [
            {"Source": "run", "Destination": "subject"},
            {"Source": "subject", "Destination": "dataset"},
        ],
    }


def model_from_summaries(settings: Settings, summaries: Sequence[UnitSummary]) -> dict:
    """The effective model over every completed unit (as the manifests describe them)."""
    return effective_model(
        settings,
        tasks=[s.task for s in summaries],
        conditions=sorted({c for s in summaries for c in s.conditions}),
        confounds=list(dict.fromkeys(c for s in summaries for c in s.confounds)),
        resolved=_resolved(summaries),
    )
