"""How long the participant report takes, against the participant's own run time.

Usage::

    python benchmarks/report_time.py [WORKDIR] [--size small|fmriprep] [--repeat N]

Generates the demo dataset in WORKDIR (reused when it is already there), times
``bids-glm BIDS OUTPUT participant --participant-label 01`` (or reads the manifest's
``ElapsedSeconds`` when recorded), then times the HTML report of sub-01 (reading maps,
thresholding, cluster tables, figures, jinja2) and, separately, its PDF (WeasyPrint, from
the print HTML, WeasyPrint already imported), and the whole ``--reports-only`` command as a
user runs it (start-up, the HTML here, the PDF in a child process that imports WeasyPrint
meanwhile: `bids_glm.report.pdf_writer`).
The issue's target: the report takes under 15% of the participant's run time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bids_glm.cli.main import main as bids_glm_main
from bids_glm.demo.dataset import make_demo_dataset
from bids_glm.report import collect
from bids_glm.report.pdf import html_to_pdf
from bids_glm.report.render import (
    ReportOptions,
    participant_document,
    render_participant_reports,
)


def participant_run_s(bids_dir: Path, output_dir: Path, work_dir: Path) -> float:
    """Time one participant-level run of sub-01 (from scratch, without its report)."""
    argv = [str(bids_dir), str(output_dir), "participant", "--participant-label", "01"]
    started = time.perf_counter()
    code = bids_glm_main([*argv, "--work-dir", str(work_dir), "--overwrite", "--no-reports", "-q"])
    elapsed = time.perf_counter() - started
    if code != 0:
        sys.exit(f"bids-glm exited with {code}")
    return elapsed


def recorded_run_s(output_dir: Path) -> float | None:
    """``ElapsedSeconds`` summed over sub-01's manifests, when recorded."""
    values = [
        json.loads(p.read_text()).get("Summary", {}).get("ElapsedSeconds")
        for p in collect.participant_manifests(output_dir, "01")
    ]
    return sum(values) if values and all(v is not None for v in values) else None


def best_of(repeat: int, action) -> float:
    """Median wall time of ``action()`` over ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path, nargs="?")
    parser.add_argument("--size", choices=("small", "fmriprep"), default="small")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bids-glm-report-bench-"))
    bids_dir, output_dir = root / "bids", root / "output"
    make_demo_dataset(bids_dir, size=args.size, n_subjects=1, n_runs=2)
    measured_s = participant_run_s(bids_dir, output_dir, root / "work")
    recorded_s = recorded_run_s(output_dir)

    html_options = ReportOptions(write_pdf=False)
    record = collect.read_participant(output_dir, collect.participant_manifests(output_dir, "01"))
    html = participant_document(record, html_options).html(for_print=True)  # the PDF's source
    html_s = best_of(
        args.repeat, lambda: render_participant_reports(output_dir, "01", html_options)
    )
    pdf_s = best_of(args.repeat, lambda: html_to_pdf(html))
    command = [sys.executable, "-m", "bids_glm", str(bids_dir), str(output_dir), "participant"]
    command += ["--participant-label", "01", "--reports-only", "-q"]
    command_s = best_of(args.repeat, lambda: subprocess.run(command, check=True))

    print(f"demo size {args.size!r}: 1 participant x 2 runs in {root}")
    print(f"participant run, whole command (total): {measured_s:7.2f} s")
    if recorded_s is not None:
        print(f"  of which the analysis (manifest):       {recorded_s:7.2f} s")
    rows = (("HTML report (read, threshold, draw)", html_s), ("PDF (WeasyPrint)", pdf_s))
    for label, seconds in (*rows, ("HTML + PDF", html_s + pdf_s)):
        shares = f"{100 * seconds / measured_s:6.1f}% of total"
        if recorded_s:
            shares += f", {100 * seconds / recorded_s:6.1f}% of the analysis"
        print(f"{label:<38} {seconds:7.2f} s  {shares}")
    print(f"bids-glm --reports-only, whole command   {command_s:7.2f} s")
    print(f"HTML size {len(html) / 1e3:.0f} kB; target: report < 15% of the participant run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
