"""Command line: parse and validate arguments into one frozen ``Settings``.

Exit codes: 0 success; 1 analysis failure; 2 usage error; 3 input not usable.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bids_glm import __version__
from bids_glm.design.names import HRF_MODELS
from bids_glm.errors import EXIT_ANALYSIS_FAILURE, EXIT_USAGE, BidsGlmError, InputError
from bids_glm.parallel import limit_threads
from bids_glm.settings import ModelSettings, Settings

LOGGER = logging.getLogger("bids_glm")
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9]+$")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``bids-glm`` (BIDS-Apps contract)."""
    parser = argparse.ArgumentParser(
        prog="bids-glm",
        description="First-level task-fMRI GLM statistics on a BIDS dataset with "
        "fMRIPrep derivatives; writes BIDS-Derivatives statistical maps.",
        epilog="Exit codes: 0 success, 1 analysis failure, 2 usage error, 3 input not usable.",
        allow_abbrev=False,
    )
    parser.add_argument("bids_dir", type=Path, help="the input BIDS dataset (read only)")
    parser.add_argument("output_dir", type=Path, help="where derivatives are written")
    parser.add_argument("analysis_level", choices=("participant", "group"))
    parser.add_argument("--version", action="version", version=f"bids-glm {__version__}")

    sel = parser.add_argument_group("selection")
    sel.add_argument(
        "--participant-label",
        "--participant_label",
        nargs="+",
        default=[],
        metavar="LABEL",
        help="participants to analyse, with or without 'sub-' (default: all)",
    )
    sel.add_argument("--task", nargs="+", default=[], metavar="TASK", help="tasks (default: all)")
    sel.add_argument("--session", nargs="+", default=[], metavar="SES", help="sessions")
    sel.add_argument(
        "--space",
        default=None,
        help="space of the preprocessed BOLD (default: the only one present, "
        "else MNI152NLin2009cAsym if present)",
    )
    sel.add_argument(
        "--derivatives",
        nargs="+",
        type=Path,
        default=None,
        metavar="DIR",
        help="fMRIPrep-like derivatives (default: BIDS_DIR/derivatives/fmriprep)",
    )

    model = parser.add_argument_group("model")
    model.add_argument("--smoothing-fwhm", type=float, default=None, metavar="MM")
    model.add_argument("--hrf-model", default="glover", choices=HRF_MODELS)
    model.add_argument(
        "--fir-delays", type=int, nargs="+", default=[0], metavar="SCANS", help="FIR delays"
    )
    model.add_argument("--drift-model", default="cosine", choices=("cosine", "polynomial", "none"))
    model.add_argument("--high-pass", type=float, default=0.01, metavar="HZ")
    model.add_argument("--drift-order", type=int, default=1)
    model.add_argument("--noise-model", default="ar1", choices=("ols", "ar1"))
    model.add_argument("--signal-scaling", default="percent", choices=("percent", "none"))
    model.add_argument(
        "--slice-time-ref",
        type=float,
        default=None,
        metavar="FRACTION",
        help="0-1 fraction of the TR (default: derivative StartTime/TR, else 0)",
    )
    model.add_argument(
        "--confounds",
        nargs="+",
        default=[],
        metavar="NAME",
        help="confound columns to include, wildcards allowed (default: none)",
    )
    model.add_argument(
        "--contrast",
        action="append",
        default=[],
        metavar="NAME=EXPRESSION",
        help='e.g. --contrast "faceVsHouse=face - house" (repeatable)',
    )
    model.add_argument("--fixed-effects", default="precision", choices=("precision", "unweighted"))

    run = parser.add_argument_group("execution")
    run.add_argument("--n-cpus", "--n_cpus", type=int, default=1)
    run.add_argument("--work-dir", "-w", type=Path, default=None)
    run.add_argument("--skip-bids-validator", action="store_true")
    verbosity = run.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0)
    verbosity.add_argument("-q", "--quiet", action="store_true")
    return parser


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


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Validate parsed arguments and return the frozen ``Settings``.

    Raises
    ------
    InputError
        When a path or label cannot be used.
    """
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
    if args.smoothing_fwhm is not None and args.smoothing_fwhm < 0:
        raise InputError(f"--smoothing-fwhm {args.smoothing_fwhm}: expected a value >= 0 mm")
    if args.high_pass <= 0:
        raise InputError(f"--high-pass {args.high_pass}: expected a frequency > 0 Hz")
    if args.slice_time_ref is not None and not 0 <= args.slice_time_ref <= 1:
        raise InputError(f"--slice-time-ref {args.slice_time_ref}: expected a fraction in [0, 1]")
    if args.n_cpus < 1:
        raise InputError(f"--n-cpus {args.n_cpus}: expected 1 or more")
    from bids_glm.design.contrasts import ContrastError, parse_contrast_option

    try:
        contrasts = tuple(parse_contrast_option(text) for text in args.contrast)
    except ContrastError as err:
        raise InputError(f"--contrast: {err}") from None
    names = [c.name for c in contrasts]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"--contrast: name(s) given more than once: {', '.join(duplicated)}")

    model = ModelSettings(
        hrf_model=args.hrf_model,
        drift_model=args.drift_model,
        high_pass_hz=args.high_pass,
        drift_order=args.drift_order,
        fir_delays_scans=tuple(args.fir_delays),
        noise_model=args.noise_model,
        signal_scaling=args.signal_scaling,
        smoothing_fwhm_mm=args.smoothing_fwhm or None,
        slice_time_ref=args.slice_time_ref,
        confounds=tuple(args.confounds),
        contrasts=contrasts,
        fixed_effects=args.fixed_effects,
    )
    return Settings(
        bids_dir=bids_dir,
        output_dir=output_dir,
        analysis_level=args.analysis_level,
        work_dir=(args.work_dir.resolve() if args.work_dir else None),
        participant_labels=_participant_labels(args.participant_label),
        tasks=tuple(args.task),
        sessions=tuple(s[4:] if s.startswith("ses-") else s for s in args.session),
        space=args.space,
        derivatives=derivatives,
        model=model,
        n_cpus=args.n_cpus,
        skip_bids_validator=args.skip_bids_validator,
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
        LOGGER.error("the group level is not implemented yet")
        return EXIT_USAGE
    from bids_glm.pipeline import run_participant_level

    run_participant_level(settings)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bids-glm`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(exc.code or 0)
    verbosity = -1 if args.quiet else args.verbose
    configure_logging(verbosity)
    limit_threads(args.n_cpus)
    try:
        settings = settings_from_args(args)
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
