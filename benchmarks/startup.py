"""Start-up of a 200-volume participant run: where the time goes before the first volume is read.

``python benchmarks/startup.py [--data DIR] [--repeats 3] [--compare LABEL=SOURCE_DIR ...]``

Runs the issue-18 command line (5 mm, AR(1), ``--n-cpus 2``, unweighted fixed effects,
``--no-reports``, one contrast) on ``streaming.py``'s 200-volume MNI run (written there
first if absent) through ``startup_trace.py``, and prints the medians of each phase: the
imports and the settings, the fork of the discovery child, what the parent loads while the
child validates and indexes, the methods templates, the design, the first read of the BOLD
series (wall and CPU seconds, RSS), the whole run's wall, CPU and peak RSS;
``--fmriprep-files`` adds empty files named as fMRIPrep's other outputs of the subject, which
pybids indexes as it would on real derivatives. ``--compare``
runs another source tree too (e.g. ``git archive <commit> | tar -x -C DIR``; it is put first
on ``PYTHONPATH``), interleaved with this checkout, each pair when the machine is quiet
(>= 85 % idle over a second, waiting up to two minutes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMAND = [
    "participant",
    "--smoothing-fwhm",
    "5",
    "--noise-model",
    "ar1",
    "--n-cpus",
    "2",
    "--fixed-effects",
    "unweighted",
    "--no-reports",
    "--contrast",
    "faceVsHouse=face-house",
    "-q",
]
# row label -> how it is read from the parent's (P) and the child's (C) events
SPANS = [
    ("imports + settings", "P", "main+", "settings-"),
    ("settings call", "P", "settings+", "settings-"),
    ("fork at", "P", "main+", "fork-"),
    ("parent: pipeline imports", "P", "import bids_glm.pipeline.participant+", "-"),
    ("parent: templates", "P", "templates+", "templates-"),
    ("validation (either)", "*", "validation+", "validation-"),
    ("child: pybids index", "C", "pybids+", "pybids-"),
    ("parent waits for child", "P", "wait child+", "wait child-"),
    ("design", "P", "design+", "design-"),
    ("first read at", "P", "main+", "open _bold.nii.gz"),
]


def _events(path: Path) -> tuple[dict, dict]:
    """The parent's and the discovery child's events: name -> (wall s, CPU s, RSS MiB)."""
    by_pid: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        pid, event, wall_s, cpu_s, rss_mib = line.split("\t")
        by_pid.setdefault(pid, {})[event] = (float(wall_s), float(cpu_s), float(rss_mib))
    parent = next(e for e in by_pid.values() if "main+" in e)
    child = next((e for e in by_pid.values() if "main+" not in e), {})
    return parent, child


def _span(events: dict, start: str, end: str) -> float:
    if end == "-":
        end = start[:-1] + "-"
    if start not in events or end not in events:
        return float("nan")
    return events[end][0] - events[start][0]


def measure(python: str, pythonpath: str | None, bids_dir: Path) -> list[float]:
    """One traced run: the :data:`SPANS`, CPU and RSS at the first read, whole-run figures."""
    with tempfile.TemporaryDirectory(prefix="bids-glm-startup-") as tmp:
        env = dict(os.environ)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        events_path = Path(tmp) / "events.tsv"
        output, work = Path(tmp) / "out", Path(tmp) / "work"
        trace = [python, str(HERE / "startup_trace.py"), str(events_path), "--"]
        command = [str(bids_dir), str(output), *COMMAND, "--work-dir", str(work)]
        subprocess.run([*trace, *command], env=env, check=True)
        parent, child = _events(events_path)
    row = []
    for _, side, start, end in SPANS:
        if side == "*":
            value = _span(parent, start, end)
            row.append(value if value == value else _span(child, start, end))
        else:
            row.append(_span(parent if side == "P" else child, start, end))
    first_read = parent["open _bold.nii.gz"]
    row += [first_read[1], first_read[2], parent["exit"][0], parent["exit"][1], parent["exit"][2]]
    return row


LABELS = [label for label, *_ in SPANS] + [
    "CPU s to first read",
    "RSS MiB at first read",
    "wall s, whole run",
    "CPU s, whole run",
    "peak RSS MiB",
]


FMRIPREP_ANAT = [
    f"{space}_{suffix}.nii.gz"
    for space in ("", "_space-MNI152NLin2009cAsym", "_space-MNI152NLin6Asym_res-2")
    for suffix in ("desc-preproc_T1w", "desc-brain_mask", "dseg", "label-GM_probseg")
] + [f"_hemi-{h}_{s}.surf.gii" for h in "LR" for s in ("white", "pial", "midthickness")]
FMRIPREP_FUNC = [
    f"_{name}.{ext}"
    for name in (
        "desc-coreg_boldref",
        "desc-hmc_boldref",
        "space-T1w_desc-preproc_bold",
        "space-T1w_desc-brain_mask",
        "space-MNI152NLin2009cAsym_boldref",
        "space-MNI152NLin6Asym_res-2_desc-preproc_bold",
        "space-T1w_desc-aparcaseg_dseg",
    )
    for ext in ("nii.gz", "json")
] + [f"_hemi-{h}_space-{s}_bold.func.gii" for h in "LR" for s in ("fsaverage5", "fsnative")]


def with_fmriprep_files(bids_dir: Path, workdir: Path) -> Path:
    """A copy of ``bids_dir`` (links) plus empty files named as fMRIPrep names a subject's.

    The benchmark run's derivatives hold 3 files; fMRIPrep writes ~50 per run and subject
    (anatomy, other spaces, references, transforms, surfaces, confounds), which pybids
    indexes too.
    """
    copy = workdir / f"{bids_dir.name}-fmriprep-files"
    if copy.exists():
        return copy
    for source in bids_dir.rglob("*"):
        if source.is_file() and source.name != ".complete":
            target = copy / source.relative_to(bids_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
    subject = copy / "derivatives/fmriprep/sub-01"
    (subject / "anat").mkdir()
    for name in FMRIPREP_ANAT:
        (subject / "anat" / f"sub-01{name}").touch()
    for name in FMRIPREP_FUNC:
        (subject / "func" / f"sub-01_task-faces_run-1{name}").write_text("{}")
    confounds = subject / "func/sub-01_task-faces_run-1_desc-confounds_timeseries"
    confounds.with_suffix(".tsv").write_text("trans_x\n" + "0\n" * 200)
    confounds.with_suffix(".json").write_text("{}")
    return copy


def _idle_fraction(seconds: float = 1.0) -> float:
    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return values[3] + values[4], sum(values)

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(total1 - total0, 1)


def _wait_quiet(limit_s: float = 120.0) -> None:
    started = time.monotonic()
    while time.monotonic() - started < limit_s and _idle_fraction() < 0.85:
        pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = Path(tempfile.gettempdir()) / "bids_glm_stream_bench"
    parser.add_argument("--workdir", type=Path, default=default_dir)
    parser.add_argument("--data", type=Path, help="a BIDS dataset (default: the 200-volume run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--fmriprep-files",
        action="store_true",
        help="index a linked copy with fMRIPrep's other outputs of the subject (empty files)",
    )
    copies = Path(tempfile.gettempdir()) / "bids_glm_startup_bench"
    parser.add_argument("--copy-dir", type=Path, default=copies, help="where that copy goes")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=SOURCE_DIR")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.path.insert(0, str(HERE))  # the sibling benchmarks
    from compare_nilearn import compile_bytecode

    bids_dir = args.data
    if bids_dir is None:
        from streaming import make_run

        bids_dir = make_run(args.workdir, 200)
    if args.fmriprep_files:
        bids_dir = with_fmriprep_files(bids_dir, args.copy_dir)
    variants = [(label, path) for label, _, path in (c.partition("=") for c in args.compare)]
    variants.append(("this", None))
    for _, path in variants:  # as installed: no module compiled from source at start-up
        compile_bytecode(None if path is None else Path(path) / "bids_glm")
    rows: dict[str, list[list[float]]] = {label: [] for label, _ in variants}
    for repeat in range(args.repeats):
        _wait_quiet()
        for label, path in variants:
            rows[label].append(measure(sys.executable, path, bids_dir))
        print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    print(f"{bids_dir}: medians of {args.repeats} (seconds unless stated)")
    print(f"{'':26s}" + "".join(f"{label:>10s}" for label in rows))
    for index, name in enumerate(LABELS):
        medians = [statistics.median(r[index] for r in runs) for runs in rows.values()]
        print(f"{name:26s}" + "".join(f"{m:10.3f}" for m in medians))
    return 0


if __name__ == "__main__":
    sys.exit(main())
