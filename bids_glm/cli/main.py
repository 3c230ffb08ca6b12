"""Command line: parse and validate arguments into one frozen ``Settings``.

Exit codes: 0 success; 1 analysis failure; 2 usage error; 3 input not usable.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bids_glm.cli.parser import build_parser
from bids_glm.errors import EXIT_ANALYSIS_FAILURE, BidsGlmError, InputError
from bids_glm.inputs.filters import read_bids_filters
from bids_glm.runtime.workers import limit_threads
from bids_glm.settings import ModelSettings, Settings

LOGGER = logging.getLogger("bids_glm")
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9]+$")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity: cgroups, SLURM, taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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


def _check_numbers(args: argparse.Namespace) -> None:
    if args.smoothing_fwhm is not None and args.smoothing_fwhm < 0:
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
    from bids_glm.inputs.confounds import ConfoundError, parse_confound_strategy
    from bids_glm.inputs.events import EventSpec

    contrasts, f_contrasts = _contrasts(args.contrast, args.f_contrast)
    try:
        confounds = parse_confound_strategy(args.confounds) if args.confounds else None
    except ConfoundError as err:
        raise InputError(f"--confounds: {err}") from None
    return ModelSettings(
        hrf_model=args.hrf_model,
        drift_model=args.drift_model,
        high_pass_hz=args.high_pass,
        drift_order=args.drift_order,
        fir_delays_scans=tuple(args.fir_delays),
        noise_model=args.noise_model,
        signal_scaling=args.signal_scaling,
        smoothing_fwhm_mm=args.smoothing_fwhm or None,
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


def _stats_model(path: Path, model: ModelSettings, mask_combine: str):
    """Load ``--model``; its Run node's settings override the model flags."""
    from bids_glm.inputs.smdl.model import load_model
    from bids_glm.inputs.smdl.options import node_overrides

    stats_model = load_model(path)
    run_nodes = [node for node in stats_model.nodes if node.level == "Run"]
    if not run_nodes:
        raise InputError(f"--model {path}: no Run node; bids-glm starts from a Run-level node")
    model_fields, settings_fields = node_overrides(run_nodes[0])
    model = replace(model, run_node=run_nodes[0], **model_fields)
    return stats_model, model, settings_fields.get("mask_combine", mask_combine)


def _mask_options(args: argparse.Namespace) -> tuple[Path | None, str]:
    from bids_glm.image.mask import parse_mask_rule

    mask = None
    if args.mask is not None:
        mask = args.mask.resolve()
        if not mask.is_file():
            raise InputError(f"--mask {args.mask}: no such file")
    try:
        return mask, parse_mask_rule(args.mask_combine)
    except ValueError as err:
        raise InputError(f"--mask-combine: {err}") from None


def _alpha(args: argparse.Namespace) -> float:
    """The height-control level: given, else nilearn's default for the method."""
    if args.alpha is None:
        return {"fpr": 0.001, "none": 3.09}.get(args.height_control, 0.05)
    if args.height_control != "none" and not 0 < args.alpha <= 1:
        raise InputError(f"--alpha {args.alpha}: expected a probability in (0, 1]")
    return args.alpha


def settings_from_args(args: argparse.Namespace, command_line: str = "") -> Settings:
    """Validate parsed arguments and return the frozen ``Settings``.

    Raises
    ------
    InputError
        When a path, label, number, contrast or strategy cannot be used.
    """
    bids_dir, output_dir, derivatives = _input_paths(args)
    _check_numbers(args)
    mask, mask_combine = _mask_options(args)
    filter_file = args.bids_filter_file.resolve() if args.bids_filter_file else None
    model = _model_settings(args)
    stats_model, tasks, labels = (
        None,
        tuple(args.task),
        _participant_labels(args.participant_label),
    )
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
        space=args.space,
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
        verbosity=-1 if args.quiet else args.verbose,
    )


def configure_logging(verbosity: int) -> None:
    """Send ``bids_glm`` records (and Python warnings) to stderr at the requested level."""
    level = {-1: logging.WARNING, 0: logging.INFO, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s", "%H:%M:%S"))
    logging.captureWarnings(True)
    for name in ("bids_glm", "py.warnings"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


def _run(settings: Settings) -> int:
    if settings.analysis_level == "group":
        _start_up_done()
        _run_group_level(settings)
        return 0
    from bids_glm.inputs.discovery import start_discovery

    # pybids' indexing uses the idle core while the fitting modules are imported
    discovery = None if settings.reports_only else start_discovery(settings)
    from bids_glm.pipeline.participant import run_participant_level

    _start_up_done()
    run_participant_level(settings, discovery)
    return 0


def _start_up_done() -> None:
    """Collect garbage again, leaving the objects made so far (modules, mostly) out of it.

    ``gc.freeze`` moves them to the permanent generation, so later collections do not walk
    them (~0.1 s saved over a run); they are freed by reference counting as usual.
    """
    gc.freeze()
    gc.enable()


def _dataset_contrasts(settings: Settings) -> frozenset[str] | None:
    """Contrasts the ``--model`` Dataset nodes test (one-sample t); None without a model."""
    if settings.stats_model is None:
        return None
    from bids_glm.inputs.smdl.graph import node_graph

    names: set[str] = set()
    for step in node_graph(settings.stats_model):
        if step.node.level != "Dataset":
            continue
        if step.design != "one_sample":
            LOGGER.warning(
                "--model: Dataset node %s (%s design) not run: bids-glm fits one-sample t "
                "tests at the dataset level",
                step.node.name,
                step.design.replace("_", " "),
            )
            continue
        if step.entity_filter:
            LOGGER.warning(
                "--model: Dataset node %s: edge filter on %s not applied (bids-glm filters "
                "edges by contrast only)",
                step.node.name,
                ", ".join(step.entity_filter),
            )
        if step.contrasts_in is None:
            return None
        names.update(step.contrasts_in)
    if not names:
        raise InputError(
            f"--model {settings.stats_model.source}: no Dataset node bids-glm can run "
            "(a one-sample t test, X = [1])"
        )
    return frozenset(names)


def _run_group_level(settings: Settings) -> None:
    from bids_glm.pipeline.group import GroupOptions, run_group_level
    from bids_glm.pipeline.reports import render_group_report

    if not settings.reports_only:
        written = run_group_level(
            GroupOptions(
                participant_outputs=settings.participant_outputs or settings.output_dir,
                output_dir=settings.output_dir / "group",
                bids_dir=settings.bids_dir,
                participant_labels=settings.participant_labels,
                tasks=settings.tasks,
                covariates=settings.group_covariates,
                mask_rule=settings.mask_combine,
                contrast_names=_dataset_contrasts(settings),
            )
        )
        LOGGER.info(
            "group level: %d map(s) written to %s", len(written), settings.output_dir / "group"
        )
    if settings.write_reports or settings.reports_only:
        render_group_report(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bids-glm`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    collecting = gc.isenabled()
    # Start-up imports create many objects and free few: cyclic garbage collection there
    # costs ~10% of the import time and reclaims nothing. It is on again once the modules
    # are loaded (`_start_up_done`), and in any case when this call returns.
    gc.disable()
    try:
        return _main(argv)
    finally:
        if collecting:
            gc.enable()


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(exc.code or 0)
    verbosity = -1 if args.quiet else args.verbose
    configure_logging(verbosity)
    limit_threads(args.n_cpus or available_cores())
    try:
        arguments = sys.argv[1:] if argv is None else list(argv)
        settings = settings_from_args(args, shlex.join(["bids-glm", *arguments]))
        if settings.work_dir is None:
            with tempfile.TemporaryDirectory(prefix="bids-glm-work-") as tmp:
                return _run(replace(settings, work_dir=Path(tmp)))
        return _run(settings)
    except BidsGlmError as err:
        if verbosity >= 1:
            LOGGER.exception("failed")
        print(f"bids-glm: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("bids-glm: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: say so briefly, traceback only with -v
        if verbosity >= 1:
            LOGGER.exception("unexpected failure")
        print(
            f"bids-glm: internal error: {type(err).__name__}: {err} "
            "(rerun with -v for the traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_ANALYSIS_FAILURE
