"""How long discovery takes on a dataset of many participants (pybids index, runs' files).

``python benchmarks/discovery.py [--subjects 40] [--runs 4] [--repeats 3] [--workdir DIR]``
writes the small demo dataset with that many participants and runs once (`DIR/bids-S-R`),
then times, each in a fresh process: bids-glm's discovery of every run (file-name
validation, pybids index without metadata, sidecars merged from one read of each JSON
file, each run's headers), and for reference pybids' own index of the same dataset with
and without its metadata indexing (which bids-glm used until session 10). Medians (min, max).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PYBIDS = """
import sys, time
from bids import BIDSLayout, BIDSLayoutIndexer
started = time.perf_counter()
indexer = BIDSLayoutIndexer(validate=False, index_metadata={metadata})
derivatives = [sys.argv[1] + "/derivatives/fmriprep"]
layout = BIDSLayout(sys.argv[1], validate=False, derivatives=derivatives, indexer=indexer)
print(time.perf_counter() - started, len(layout.get(suffix="bold", extension=".nii.gz")))
"""
CHILD = {
    "bids-glm discovery": """
import sys, time
from bids_glm.cli.main import build_parser, settings_from_args
settings = settings_from_args(build_parser().parse_args([sys.argv[1], sys.argv[2], "participant"]))
from bids_glm.inputs.layout import requested_participants, validated_runs
participants = requested_participants(settings)
started = time.perf_counter()
found = validated_runs(settings, participants)
print(time.perf_counter() - started, len(found.runs))
""",
    "pybids index, metadata": PYBIDS.format(metadata=True),
    "pybids index, no metadata": PYBIDS.format(metadata=False),
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bids_glm.demo.dataset import make_demo_dataset

    bids = args.workdir / f"bids-{args.subjects}-{args.runs}"
    if not (bids / "dataset_description.json").exists():
        print(f"writing {bids} ...", flush=True)
        make_demo_dataset(bids, size="small", n_subjects=args.subjects, n_runs=args.runs)
    output = args.workdir / "discovery-output"  # never written: discovery only
    print(f"{args.subjects} participants x {args.runs} runs, {args.repeats} fresh processes each")
    for label, code in CHILD.items():
        times, counted = [], 0
        for _ in range(args.repeats):
            result = subprocess.run(
                [sys.executable, "-c", code, str(bids), str(output)],
                check=True,
                capture_output=True,
                text=True,
            )
            seconds, counted = result.stdout.split()
            times.append(float(seconds))
        what = "runs" if label.startswith("bids-glm") else "BOLD files, raw + preproc"
        print(
            f"{label:<28}{statistics.median(times):7.2f} s  ({min(times):.2f}, {max(times):.2f})"
            f"  {counted} {what}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = Path(tempfile.gettempdir()) / "bids_glm_discovery_bench"
    parser.add_argument("--workdir", type=Path, default=default_dir)
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
