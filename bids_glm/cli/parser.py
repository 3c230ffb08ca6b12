"""The command line's options (BIDS-Apps contract); validation lives in ``cli/validate.py``."""

from __future__ import annotations

import argparse
from pathlib import Path

from bids_glm import __version__
from bids_glm.design.hrf_spec import HRF_MODELS

# defaults of the model options that --preset spm12 sets otherwise: the parser keeps None
# when the option is not typed (and the Boutiques descriptor gives no default-value), so a
# typed value counts even when it equals the default; cli/validate.py resolves the None
MODEL_DEFAULTS = {
    "hrf_model": "glover",
    "drift_model": "cosine",
    "high_pass": 0.01,
    "signal_scaling": "percent",
}


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
        metavar="SPACE[:res-N][:den-D]",
        help="space of the preprocessed BOLD (default: the only one present, else "
        "MNI152NLin2009cAsym if present), optionally with its grid as fMRIPrep names it, "
        "e.g. MNI152NLin2009cAsym:res-2 (default grid: the one without a res entity, "
        "fMRIPrep's res-native, else the lowest res index)",
    )
    sel.add_argument(
        "--desc",
        default="preproc",
        metavar="LABEL",
        help="desc label of the preprocessed BOLD to analyse, e.g. smoothAROMAnonaggr "
        "(default: preproc); masks and confounds are matched to the run as usual",
    )
    sel.add_argument(
        "--derivatives",
        nargs="+",
        type=Path,
        default=None,
        metavar="DIR",
        help="fMRIPrep-like derivatives (default: BIDS_DIR/derivatives/fmriprep)",
    )

    sel.add_argument(
        "--bids-filter-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="JSON of pybids filters for the preprocessed BOLD, as fMRIPrep takes it, e.g. "
        '{"bold": {"session": "01", "run": [1, 2]}}',
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="SMDL_JSON",
        help="a BIDS Stats Model (1.0.0): its Run node sets regressors, HRF, high-pass and "
        "contrasts (its Options override the model flags below); its Dataset nodes, the "
        "group level's contrasts",
    )
    model.add_argument(
        "--design-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="user design matrices, one per run, named like bids-glm's own "
        "(sub-<s>[_ses-<x>]_task-<t>[_run-<r>][_space-<sp>]_design.tsv or .csv; nilearn's "
        "save_glm_to_bids names too): one row per volume, a header naming the columns. "
        "Used as given (no HRF, drift, confounds or constant added; --dummy-scans and "
        "censoring still remove rows); no per-condition contrasts: give --contrast or "
        "--f-contrast",
    )
    model.add_argument("--smoothing-fwhm", type=float, default=0.0, metavar="MM")
    model.add_argument(
        "--surface-mesh-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="mid-thickness meshes (*_hemi-<L|R>_midthickness.surf.gii) for surface data",
    )
    model.add_argument(
        "--hrf-model",
        default=None,
        choices=HRF_MODELS,
        help=f"default: {MODEL_DEFAULTS['hrf_model']} (spm with --preset spm12)",
    )
    model.add_argument(
        "--fir-delays", type=int, nargs="+", default=[0], metavar="SCANS", help="FIR delays"
    )
    model.add_argument(
        "--drift-model",
        default=None,
        choices=("cosine", "polynomial", "none"),
        help=f"default: {MODEL_DEFAULTS['drift_model']}",
    )
    model.add_argument(
        "--high-pass",
        type=float,
        default=None,
        metavar="HZ",
        help=f"default: {MODEL_DEFAULTS['high_pass']} (1/128 with --preset spm12)",
    )
    model.add_argument("--drift-order", type=int, default=1)
    model.add_argument(
        "--preset",
        default=None,
        choices=("spm12",),
        help="spm12: SPM12's own first-level model (one multi-session GLM, microtime design, "
        "DCT high-pass, session scaling, ReML AR(1)); other model flags keep SPM's meaning",
    )
    model.add_argument(
        "--microtime",
        default=None,
        metavar="T,T0",
        help="with --preset spm12: SPM's fmri_t and fmri_t0 (default 16,8)",
    )
    model.add_argument("--noise-model", default="ar1", choices=("ols", "ar1"))
    model.add_argument(
        "--signal-scaling",
        default=None,
        choices=("percent", "global", "none"),
        help=f"default: {MODEL_DEFAULTS['signal_scaling']} (global with --preset spm12)",
    )
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
        metavar="ITEM",
        help="confound presets (motion6, motion24, wm_csf, global_signal, acompcor, cosine, "
        "non_steady_state, scrub:FD=0.5,DVARS=1.5) and/or column names with wildcards "
        "(default: none)",
    )
    model.add_argument(
        "--dummy-scans", type=int, default=0, metavar="N", help="drop the first N volumes"
    )
    model.add_argument(
        "--condition-column",
        default="trial_type",
        metavar="COLUMN",
        help="events column holding the conditions (default: trial_type)",
    )
    model.add_argument(
        "--amplitude-column",
        default=None,
        metavar="COLUMN",
        help="events column scaling each event (default: modulation when present)",
    )
    model.add_argument(
        "--parametric-modulators",
        nargs="+",
        default=[],
        metavar="COLUMN",
        help="numeric events columns modelled as <condition>_x_<column>, demeaned per run",
    )
    model.add_argument(
        "--contrast",
        action="append",
        default=[],
        metavar="NAME=EXPRESSION",
        help='e.g. --contrast "faceVsHouse=face - house", or weights of the first columns '
        '"x=[1, -1]" (zero-padded; repeatable)',
    )
    model.add_argument(
        "--f-contrast",
        action="append",
        default=[],
        metavar="NAME=ROW;ROW",
        help='F contrast, rows separated by ";", e.g. --f-contrast "effects=face; house", '
        'or a matrix "effects=[[1, 0], [0, 1]]"',
    )
    model.add_argument("--fixed-effects", default="precision", choices=("precision", "unweighted"))
    model.add_argument("--mask", type=Path, default=None, help="analysis mask (NIfTI)")
    model.add_argument(
        "--mask-combine",
        default="intersection",
        metavar="RULE",
        help="combine the runs' brain masks: intersection, union or fraction:F",
    )
    model.add_argument(
        "--model-maps",
        action="store_true",
        help="also write per-run r-squared, residual SD and AR(1) maps",
    )
    model.add_argument(
        "--single-trial",
        choices=("lsa", "lss"),
        default=None,
        help="also write per-run beta series, one estimate per trial: LSA (one model, "
        "a regressor per trial) or LSS (a model per trial; Mumford et al. 2012)",
    )
    model.add_argument(
        "--single-trial-conditions",
        nargs="+",
        default=[],
        metavar="CONDITION",
        help="conditions whose trials get estimates (default: all)",
    )
    model.add_argument(
        "--single-trial-maps",
        choices=("t",),
        default=None,
        help="also write, beside each beta series, the matching t series",
    )

    report = parser.add_argument_group("reports and cluster tables")
    report.add_argument(
        "--height-control", default="fpr", choices=("fpr", "fdr", "bonferroni", "none")
    )
    report.add_argument(
        "--alpha", type=float, default=None, help="0.001 for fpr, else 0.05; z for none"
    )
    report.add_argument("--cluster-extent", type=int, default=0, metavar="VOXELS")
    report.add_argument(
        "--no-reports", action="store_true", help="write no HTML/PDF reports (maps only)"
    )
    report.add_argument(
        "--no-pdf", action="store_true", help="write the HTML reports only (no PDF copies)"
    )
    report.add_argument(
        "--reports-only",
        action="store_true",
        help="re-render the reports from outputs already in OUTPUT_DIR (no refit), "
        "e.g. with another threshold",
    )
    report.add_argument(
        "--report-run-maps",
        action="store_true",
        help="also show each run's thresholded maps in the participant report",
    )

    group = parser.add_argument_group("group level")
    group.add_argument(
        "--participant-outputs",
        type=Path,
        default=None,
        metavar="DIR",
        help="participant-level outputs to combine (default: OUTPUT_DIR)",
    )
    group.add_argument(
        "--group-covariates",
        nargs="+",
        default=[],
        metavar="COLUMN",
        help="participants.tsv columns for the group design (categorical ones dummy-coded, "
        "numeric ones demeaned)",
    )

    run = parser.add_argument_group("execution")
    run.add_argument(
        "--n-cpus",
        "--n_cpus",
        type=int,
        default=None,
        metavar="N",
        help=(
            "cores to use (default: every core this process may run on, e.g. a SLURM "
            "allocation, within its cgroup's CPU quota, e.g. docker run --cpus); "
            "1: one thread, no child process"
        ),
    )
    run.add_argument("--work-dir", "-w", type=Path, default=None)
    run.add_argument("--skip-bids-validator", action="store_true")
    run.add_argument(
        "--dry-run", action="store_true", help="write the designs, print the plan, fit nothing"
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="redo participants whose outputs are already complete with the same settings",
    )
    verbosity = run.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0)
    verbosity.add_argument("-q", "--quiet", action="store_true")
    return parser
