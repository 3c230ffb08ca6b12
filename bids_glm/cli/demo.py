"""``bids-glm-demo``: generate the demo dataset, then run the participant level on it."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bids_glm.cli.main import main as cli_main
from bids_glm.demo import fiac, fiac_contrasts, surface_dataset
from bids_glm.demo.dataset import DEMO_SIZES, make_demo_dataset
from bids_glm.derivatives import naming
from bids_glm.inputs.meshes import TEMPLATE_MESHES


def _split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


DESIGNS = ("faces", "fiac")
FACES_DEFAULTS = {"size": "small", "subjects": 3, "runs": 2, "sessions": []}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``bids-glm-demo``."""
    parser = argparse.ArgumentParser(
        prog="bids-glm-demo",
        description="Generate a BIDS + fMRIPrep-like demo dataset with planted activations "
        "in OUTDIR/bids, then run the participant level into OUTDIR/output.",
        epilog="Arguments after '--' are passed to bids-glm.",
        allow_abbrev=False,
    )
    parser.add_argument("outdir", type=Path, help="folder for bids/, output/ and work/")
    parser.add_argument(
        "--design",
        choices=DESIGNS,
        default="faces",
        help="faces (default): the faces/houses demo; fiac: one subject, two runs shaped "
        "like nilearn's FIAC example, with pre-computed designs in OUTDIR/designs",
    )
    parser.add_argument("--size", choices=sorted(DEMO_SIZES), default=None, help="faces only")
    parser.add_argument("--subjects", type=int, default=None, metavar="N", help="faces only")
    parser.add_argument("--runs", type=int, default=None, metavar="N", help="faces only")
    parser.add_argument("--sessions", nargs="+", default=None, metavar="LABEL", help="faces only")
    parser.add_argument(
        "--space",
        choices=sorted(surface_dataset.SPACES),
        default=None,
        help="faces only: surface data instead of volumes, fsaverage5 (GIfTI pairs, "
        "10242 vertices per hemisphere) or fsLR (CIFTI den-91k-like grayordinates); the "
        "meshes go to OUTDIR/templateflow",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-run", action="store_true", help="only generate the dataset")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bids-glm-demo`` and return its exit code."""
    own, extra = _split_argv(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(own)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.design == "fiac":
        given = [f"--{name}" for name in FACES_DEFAULTS if getattr(args, name) is not None]
        if given:
            print(
                f"bids-glm-demo: error: {', '.join(given)} apply to --design faces only; "
                "the FIAC demo is one subject with two runs",
                file=sys.stderr,
            )
            return 2
        return _fiac(args, extra)
    for name, default in FACES_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.space is not None:
        return _surface(args, extra)
    return _faces(args, extra)


def _surface(args: argparse.Namespace, extra: list[str]) -> int:
    """The surface demo: GIfTI or CIFTI data and meshes, then the participant level."""
    if args.sessions:
        print("bids-glm-demo: error: --sessions apply to volumes only", file=sys.stderr)
        return 2
    bids_dir, mesh_dir = args.outdir / "bids", args.outdir / "templateflow"
    what = (
        f"a {args.space} surface dataset ({args.subjects} subject(s) x {args.runs} run(s), "
        f"seed {args.seed}) in {bids_dir}, its meshes in {mesh_dir}"
    )
    made = _generate(
        what,
        lambda progress: surface_dataset.make_surface_demo(
            bids_dir,
            args.space,
            templateflow_dir=mesh_dir,
            n_subjects=args.subjects,
            n_runs=args.runs,
            seed=args.seed,
            progress=progress,
        ),
    )
    if not made or args.no_run:
        return 0 if made else 2
    meshes = mesh_dir / f"tpl-{TEMPLATE_MESHES[args.space][0]}"  # the report draws on them
    options = ["--space", args.space, "--surface-mesh-dir", str(meshes)]
    return _run_bids_glm(args.outdir, bids_dir, [*options, *extra])


def _faces(args: argparse.Namespace, extra: list[str]) -> int:
    """The default demo: generate, then run the participant level with ``extra``."""
    bids_dir = args.outdir / "bids"
    what = (
        f"a '{args.size}' dataset ({args.subjects} subject(s) x {args.runs} run(s), seed "
        f"{args.seed}) in {bids_dir}"
    )
    made = _generate(
        what,
        lambda progress: make_demo_dataset(
            bids_dir,
            size=args.size,
            n_subjects=args.subjects,
            n_runs=args.runs,
            seed=args.seed,
            sessions=args.sessions,
            progress=progress,
        ),
    )
    if not made or args.no_run:
        return 0 if made else 2
    return _run_bids_glm(args.outdir, bids_dir, extra)


def _fiac(args: argparse.Namespace, extra: list[str]) -> int:
    """The FIAC demo: generate the data and designs, then run the example's analysis."""
    bids_dir, design_dir = args.outdir / "bids", args.outdir / fiac.DESIGNS_FOLDER
    what = (
        f"the FIAC-shaped dataset (1 subject x 2 runs, seed {args.seed}) in {bids_dir}, "
        f"its designs in {design_dir}"
    )
    made = _generate(
        what,
        lambda progress: fiac.make_fiac_dataset(
            bids_dir, design_dir, seed=args.seed, progress=progress
        ),
    )
    if not made or args.no_run:
        return 0 if made else 2
    arguments = fiac_contrasts.analysis_arguments(design_dir)
    return _run_bids_glm(args.outdir, bids_dir, [*arguments, *extra])


def _generate(what: str, make: Callable[[Callable[[str], None]], object]) -> bool:
    """Say what is generated and make it (``make(progress)``); False when it cannot be."""
    print(f"bids-glm-demo: generating {what}", flush=True)
    start = time.perf_counter()
    try:
        make(lambda line: print(line, flush=True))
    except (FileExistsError, ValueError) as exc:
        print(f"bids-glm-demo: error: {exc}", file=sys.stderr)
        return False
    print(f"bids-glm-demo: dataset ready in {time.perf_counter() - start:.1f} s", flush=True)
    return True


def _run_bids_glm(outdir: Path, bids_dir: Path, extra: list[str]) -> int:
    """Run the participant level on ``bids_dir`` into ``outdir/output``; its exit code."""
    output_dir = outdir / "output"
    cli_argv = [str(bids_dir), str(output_dir), "participant"]
    cli_argv += ["--work-dir", str(outdir / "work"), *extra]
    print(f"bids-glm-demo: running bids-glm {shlex.join(cli_argv)}", flush=True)
    exit_code = cli_main(cli_argv)
    print(f"bids-glm-demo: bids-glm exited with {exit_code}; outputs in {output_dir}")
    report = naming.report_path(output_dir, "01")
    if report.is_file():
        print(f"bids-glm-demo: report {report}")
    return exit_code
