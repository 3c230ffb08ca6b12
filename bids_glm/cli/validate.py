"""Command-line arguments -> one frozen ``Settings``: every option checked and typed here.

Paths are resolved and kept out of the input dataset, labels checked against the BIDS label
pattern, numbers checked against their ranges, contrasts and the confound strategy parsed,
and a ``--model`` file loaded (its Run node's options override the model flags). Any option
that cannot be used raises an ``InputError`` naming it.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from bids_glm.cli.parser import MODEL_DEFAULTS
from bids_glm.cli.preset import spm12_settings
from bids_glm.design.hrf_spec import parse_hrf_model
from bids_glm.errors import InputError
from bids_glm.image.mask_rule import MaskRule, parse_mask_rule
from bids_glm.inputs.filters import read_bids_filters
from bids_glm.runtime.threads import available_cores
from bids_glm.settings import ModelSettings, Settings

if TYPE_CHECKING:
    from bids_glm.inputs.smdl.model import StatsModel

LABEL_PATTERN = re.compile(r"^[A-Za-z0-9]+$")


def _participant_labels(raw: Sequence[str]) -> tuple[str, ...]:
    labels = []
    for text in raw:
        label = text[4:] if text.startswith("sub-") else text
        if not LABEL_PATTERN.match(label):
            raise InputError(
                f"--participant-label {text!r}: a BIDS label has only letters and digits "
                "(e.g. 01 or sub-01)"
            )
        if label not in labels:
            labels.append(label)
    return tuple(labels)


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _contrasts(t_texts: Sequence[str], f_texts: Sequence[str]) -> tuple[tuple, tuple]:
    """Parse ``--contrast`` and ``--f-contrast`` values; names must be unique."""
    from bids_glm.design.contrast_options import (
        ContrastError,
        parse_contrast_option,
        parse_f_contrast_option,
    )

    try:
        contrasts = tuple(parse_contrast_option(text) for text in t_texts)
        f_contrasts = tuple(parse_f_contrast_option(text) for text in f_texts)
    except ContrastError as err:
        raise InputError(f"contrast: {err}") from None
    names = [c.name for c in (*contrasts, *f_contrasts)]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"contrast name(s) given more than once: {', '.join(duplicated)}")
    return contrasts, f_contrasts


def _input_paths(args: argparse.Namespace) -> tuple[Path, Path, tuple[Path, ...]]:
    """BIDS_DIR, OUTPUT_DIR and the derivatives, checked so the input is never written."""
    bids_dir = args.bids_dir.resolve()
    if not bids_dir.is_dir():
        raise InputError(f"BIDS_DIR {args.bids_dir}: not a directory")
    output_dir = args.output_dir.resolve()
    if _is_within(output_dir, bids_dir) and not _is_within(output_dir, bids_dir / "derivatives"):
        raise InputError(
            f"OUTPUT_DIR {args.output_dir} is inside BIDS_DIR {args.bids_dir}: "
            "the input dataset is never written; choose a folder outside it "
            "(or under BIDS_DIR/derivatives/)"
        )
    _check_output_dir(output_dir, args.output_dir)
    if args.derivatives is None:
        default = bids_dir / "derivatives" / "fmriprep"
        derivatives = (default,) if default.is_dir() else ()
    else:
        derivatives = tuple(p.resolve() for p in args.derivatives)
        for path in derivatives:
            if not path.is_dir():
                raise InputError(f"--derivatives {path}: not a directory")
    for path in derivatives:
        if _is_within(output_dir, path) or _is_within(path, output_dir):
            raise InputError(f"OUTPUT_DIR {output_dir} overlaps the input derivatives {path}")
    return bids_dir, output_dir, derivatives


def _check_output_dir(output_dir: Path, given: Path) -> None:
    """OUTPUT_DIR is a folder, or can be made one: checked before any input is read.

    Nothing is created here (a run whose input is refused leaves no empty folder); the
    nearest existing folder on the way must be a writable folder.
    """
    existing = output_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "OUTPUT_DIR" if existing == output_dir else f"its parent {existing}"
        raise InputError(
            f"OUTPUT_DIR {given}: cannot be created: {what} is not a directory "
            "(expected a folder, or a path whose parents are folders)"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "OUTPUT_DIR" if existing == output_dir else f"its parent {existing}"
        raise InputError(
            f"OUTPUT_DIR {given}: cannot be {'written' if existing == output_dir else 'created'}"
            f": {what} is not writable (permission denied)"
        )


def _check_numbers(args: argparse.Namespace) -> None:
    if args.smoothing_fwhm < 0:
        raise InputError(f"--smoothing-fwhm {args.smoothing_fwhm}: expected a value >= 0 mm")
    if args.high_pass <= 0:
        raise InputError(f"--high-pass {args.high_pass}: expected a frequency > 0 Hz")
    if args.slice_time_ref is not None and not 0 <= args.slice_time_ref <= 1:
        raise InputError(f"--slice-time-ref {args.slice_time_ref}: expected a fraction in [0, 1]")
    if args.n_cpus is not None and args.n_cpus < 1:
        raise InputError(f"--n-cpus {args.n_cpus}: expected 1 or more")
    if args.cluster_extent < 0:
        raise InputError(f"--cluster-extent {args.cluster_extent}: expected 0 or more voxels")
    if args.dummy_scans < 0:
        raise InputError(f"--dummy-scans {args.dummy_scans}: expected 0 or more")


def _model_settings(args: argparse.Namespace) -> ModelSettings:
    """The model options, parsed (contrasts, confound strategy, events columns)."""
    from bids_glm.inputs.confound_strategy import ConfoundError, parse_confound_strategy
    from bids_glm.inputs.event_spec import EventSpec

    contrasts, f_contrasts = _contrasts(args.contrast, args.f_contrast)
    try:
        confounds = parse_confound_strategy(args.confounds) if args.confounds else None
    except ConfoundError as err:
        raise InputError(f"--confounds: {err}") from None
    return ModelSettings(
        hrf_model=parse_hrf_model(args.hrf_model),
        drift_model=args.drift_model,
        high_pass_hz=args.high_pass,
        drift_order=args.drift_order,
        fir_delays_scans=tuple(args.fir_delays),
        noise_model=args.noise_model,
        signal_scaling=args.signal_scaling,
        smoothing_fwhm_mm=args.smoothing_fwhm,
        slice_time_ref=args.slice_time_ref,
        confounds=confounds,
        events=EventSpec(
            condition_column=args.condition_column,
            amplitude_column=args.amplitude_column,
            parametric_modulators=tuple(args.parametric_modulators),
        ),
        dummy_scans=args.dummy_scans,
        contrasts=contrasts,
        f_contrasts=f_contrasts,
        fixed_effects=args.fixed_effects,
    )


def _design_dir(args: argparse.Namespace, model: ModelSettings) -> ModelSettings:
    """``--design-dir``: a folder; no --model, no confound regressors, some contrast."""
    design_dir = args.design_dir.resolve()
    if not design_dir.is_dir():
        raise InputError(f"--design-dir {args.design_dir}: not a directory")
    if args.model is not None:
        raise InputError(
            f"--design-dir with --model {args.model}: the Run node builds the designs; "
            "use one or the other"
        )
    strategy = model.confounds
    if strategy is not None and (strategy.presets or strategy.patterns):
        added = ", ".join((*strategy.presets, *strategy.patterns))
        raise InputError(
            f"--confounds {added} with --design-dir: a user design is used as given, so no "
            "confound regressor is added; put them in the design files (only censoring, "
            "scrub:... and non_steady_state, applies to user designs)"
        )
    if not model.contrasts and not model.f_contrasts:
        raise InputError(
            f"--design-dir {args.design_dir}: a user design has no conditions, so no contrast "
            "is computed unless asked for; expected at least one --contrast or --f-contrast "
            "over the designs' column names"
        )
    return replace(model, design_dir=design_dir)


def _single_trial(args: argparse.Namespace, model: ModelSettings) -> dict:
    """``--single-trial`` and its conditions, on designs bids-glm builds with one HRF column."""
    conditions = tuple(dict.fromkeys(args.single_trial_conditions))
    maps = (args.single_trial_maps,) if args.single_trial_maps else ()
    if args.single_trial is None:
        for flag, used in (("conditions", conditions), ("maps", maps)):
            if used:
                raise InputError(f"--single-trial-{flag} needs --single-trial lsa or lss")
        return {}
    clash = [
        flag
        for flag, used in (
            ("--design-dir", args.design_dir is not None),
            ("--model", args.model is not None),
            ("--parametric-modulators", bool(model.events and model.events.parametric_modulators)),
        )
        if used
    ]
    hrf = model.hrf_model
    if hrf.base == "fir" or hrf.time_derivative or hrf.dispersion_derivative:
        clash.append(f"--hrf-model {hrf}")
    if clash:
        raise InputError(
            f"--single-trial {args.single_trial} with {', '.join(clash)}: single-trial "
            "estimates need designs bids-glm builds from the events, one HRF column per "
            "condition (spm or glover, no derivatives) and no parametric modulators"
        )
    return {
        "single_trial": args.single_trial,
        "single_trial_conditions": conditions,
        "single_trial_maps": maps,
    }


def _stats_model(
    path: Path, model: ModelSettings, mask_combine: MaskRule
) -> tuple[StatsModel, ModelSettings, MaskRule]:
    """Load ``--model``; its Run node's settings override the model flags."""
    from bids_glm.inputs.smdl.load import load_model
    from bids_glm.inputs.smdl.options import node_overrides

    stats_model = load_model(path)
    run_nodes = [node for node in stats_model.nodes if node.level == "Run"]
    if not run_nodes:
        raise InputError(f"--model {path}: no Run node; bids-glm starts from a Run-level node")
    model_fields, settings_fields = node_overrides(run_nodes[0])
    model = replace(model, run_node=run_nodes[0], **model_fields)
    return stats_model, model, settings_fields.get("mask_combine", mask_combine)


def _mask_options(args: argparse.Namespace) -> tuple[Path | None, MaskRule]:
    mask = None
    if args.mask is not None:
        mask = args.mask.resolve()
        if not mask.is_file():
            raise InputError(f"--mask {args.mask}: no such file")
    try:
        return mask, parse_mask_rule(args.mask_combine)
    except ValueError as err:
        raise InputError(f"--mask-combine: {err}") from None


def _variant_options(args: argparse.Namespace) -> dict[str, str | None]:
    """``--space SPACE[:res-N][:den-D]`` and ``--desc``, typed (see ``inputs/variants.py``)."""
    from bids_glm.inputs.variants import (
        check_desc,
        parse_space_option,
    )

    try:
        desc = check_desc(args.desc)
    except ValueError as err:
        raise InputError(f"--desc {err}") from None
    if args.space is None:
        return {"desc": desc}
    try:
        option = parse_space_option(args.space)
    except ValueError as err:
        raise InputError(f"--space {err}") from None
    return {
        "space": option.space,
        "resolution": option.resolution,
        "density": option.density,
        "desc": desc,
    }


def _mesh_places(args: argparse.Namespace) -> dict[str, Path | None]:
    """``--surface-mesh-dir`` (an existing folder) and the TemplateFlow cache to search."""
    mesh_dir = None
    if args.surface_mesh_dir is not None:
        mesh_dir = args.surface_mesh_dir.resolve()
        if not mesh_dir.is_dir():
            raise InputError(f"--surface-mesh-dir {args.surface_mesh_dir}: not a directory")
    home = os.environ.get("TEMPLATEFLOW_HOME") or os.path.expanduser("~/.cache/templateflow")
    templateflow = None if home.startswith("~") else Path(home)  # no home directory: none
    return {"surface_mesh_dir": mesh_dir, "templateflow_home": templateflow}


def _alpha(args: argparse.Namespace) -> float:
    """The height-control level: given, else nilearn's default for the method."""
    if args.alpha is None:
        return {"fpr": 0.001, "none": 3.09}.get(args.height_control, 0.05)
    if args.height_control != "none" and not 0 < args.alpha <= 1:
        raise InputError(f"--alpha {args.alpha}: expected a probability in (0, 1]")
    return args.alpha


def _with_defaults(args: argparse.Namespace) -> tuple[argparse.Namespace, frozenset[str]]:
    """The model options not typed (None) set to their defaults; and the typed ones."""
    typed = frozenset(dest for dest in MODEL_DEFAULTS if getattr(args, dest, None) is not None)
    defaults = {dest: value for dest, value in MODEL_DEFAULTS.items() if dest not in typed}
    return argparse.Namespace(**{**vars(args), **defaults}), typed


def settings_from_args(args: argparse.Namespace, command_line: str = "") -> Settings:
    """Validate parsed arguments and return the frozen ``Settings``, every option typed.

    Parameters
    ----------
    args : argparse.Namespace
        The arguments as :func:`bids_glm.cli.parser.build_parser` parses them.
    command_line : str
        The command as typed, for the methods text.

    Returns
    -------
    Settings
        ``work_dir`` is None when ``--work-dir`` is not given (the caller makes one).

    Raises
    ------
    InputError
        When a path, label, number, contrast, strategy, mask rule or ``--model`` cannot
        be used.
    """
    args, typed = _with_defaults(args)
    bids_dir, output_dir, derivatives = _input_paths(args)
    _check_numbers(args)
    mask, mask_combine = _mask_options(args)
    filter_file = args.bids_filter_file.resolve() if args.bids_filter_file else None
    model, spm12 = spm12_settings(args, _model_settings(args), typed)
    stats_model, tasks, labels = (
        None,
        tuple(args.task),
        _participant_labels(args.participant_label),
    )
    if args.design_dir is not None:
        model = _design_dir(args, model)
    if args.model is not None:
        stats_model, model, mask_combine = _stats_model(args.model, model, mask_combine)
        tasks = tasks or tuple(stats_model.input.get("task", ()))
        labels = labels or _participant_labels(stats_model.input.get("subject", ()))
    return Settings(
        bids_dir=bids_dir,
        output_dir=output_dir,
        analysis_level=args.analysis_level,
        work_dir=(args.work_dir.resolve() if args.work_dir else None),
        participant_labels=labels,
        tasks=tasks,
        sessions=tuple(s[4:] if s.startswith("ses-") else s for s in args.session),
        **_variant_options(args),
        derivatives=derivatives,
        bids_filter_file=filter_file,
        bids_filters=read_bids_filters(filter_file) if filter_file else {},
        model=model,
        stats_model=stats_model,
        n_cpus=args.n_cpus or available_cores(),
        skip_bids_validator=args.skip_bids_validator,
        mask=mask,
        mask_combine=mask_combine,
        model_maps=args.model_maps,
        **_single_trial(args, model),
        dry_run=args.dry_run,
        overwrite=args.overwrite,
        command_line=command_line,
        height_control=args.height_control,
        alpha=_alpha(args),
        cluster_extent=args.cluster_extent,
        write_reports=not args.no_reports,
        write_pdf=not args.no_pdf,
        reports_only=args.reports_only,
        report_run_maps=args.report_run_maps,
        participant_outputs=(
            args.participant_outputs.resolve() if args.participant_outputs else None
        ),
        group_covariates=tuple(args.group_covariates),
        **_mesh_places(args),
        verbosity=-1 if args.quiet else args.verbose,
        spm12=spm12,
    )
