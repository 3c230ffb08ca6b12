"""Wall time, peak memory and agreement of bids-glm against nilearn on one subject.

``python benchmarks/compare_nilearn.py --help`` lists the options; ``benchmarks/README.md``
describes what is run and measured. In short: the fMRIPrep-sized demo subject, bids-glm's
participant level and the equivalent nilearn ``FirstLevelModel`` pipeline (bids-glm's designs
and mask, same smoothing, noise model, scaling, 8 contrasts, maps written) each in a child
process started by a wrapper that reports the child's wall time, CPU time and ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_glm.runtime.workers import THREADS_PER_WORKER

CONDITIONS = ("face", "house", "scrambled")
EXTRA_CONTRASTS = {
    "faceVsHouse": "face - house",
    "houseVsFace": "house - face",
    "faceVsScrambled": "face - scrambled",
    "houseVsScrambled": "house - scrambled",
    "facesAndHousesVsScrambled": "face + house - 2*scrambled",
}
CONTRASTS = {**{name: name for name in CONDITIONS}, **EXTRA_CONTRASTS}
NILEARN_MAPS = ("effect_size", "effect_variance", "stat", "p_value", "z_score")
DZ_TOLERANCE = 1e-3
TARGET_SPEEDUP = 7.0
TARGET_MEMORY_FRACTION = 0.20
TARGET_RUN_SCALING = 1.2
BOLD_PATTERN = "sub-01/func/*_desc-preproc_bold.nii.gz"
RUN_PATTERN = re.compile(r"_run-([A-Za-z0-9]+)_")
# Folders of --workdir written by each measured run (removed at the end unless --keep).
SAME_MAPS = "same-maps"
SUBJECT_MAPS = "subject-maps"
NILEARN_VARIANTS = {
    SAME_MAPS: "run- and subject-level maps written, as bids-glm writes them",
    SUBJECT_MAPS: "subject-level maps only: less work than bids-glm does",
}
OUTPUT_FOLDERS = (
    "bids-glm-warmup",
    "bids-glm",
    *(f"nilearn-{variant}" for variant in NILEARN_VARIANTS),
    "bids-glm-runs2",
    "bids-glm-runs4",
)

# Runs argv[2:] as a child, then writes its wall time, CPU time and peak RSS (KiB on Linux)
# to argv[1].
MEASURE_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[2:]).returncode
wall_s = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
result = {
    "wall_s": wall_s,
    "cpu_s": usage.ru_utime + usage.ru_stime,
    "peak_kib": usage.ru_maxrss,
    "returncode": code,
}
with open(sys.argv[1], "w") as stream:
    json.dump(result, stream)
sys.exit(code)
"""


@dataclass(frozen=True)
class Measurement:
    """One measured child process: wall and CPU (user + system) time, peak RSS."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float


@dataclass(frozen=True)
class Agreement:
    """bids-glm versus nilearn for one contrast, over the in-mask voxels."""

    contrast: str
    max_abs_dz: float
    n_voxels_dz_above_tolerance: int
    max_relative_effect_difference: float
    n_voxels: int


def compile_bytecode(package_dir: Path | None = None) -> None:
    """Compile bids-glm's modules to bytecode first, as installing it does.

    pip and the container image compile every module when they install bids-glm. A source
    checkout (an editable install) run under ``PYTHONDONTWRITEBYTECODE`` (set on these
    machines) has no bytecode, so each run would compile ~120 modules from source: ~0.08 s
    of start-up that no installed bids-glm spends (measured in session 9). nilearn, pybids
    and the other libraries come from wheels, compiled by pip.
    """
    if package_dir is None:
        import bids_glm

        package_dir = Path(bids_glm.__file__).parent
    compileall.compile_dir(package_dir, quiet=1)


def measure(command: Sequence[str], log_path: Path) -> Measurement:
    """Run ``command`` through the wrapper; return its wall time and peak RSS.

    Raises ``RuntimeError`` naming the log file when the command fails.
    """
    with tempfile.TemporaryDirectory() as scratch:
        result_path = Path(scratch) / "measure.json"
        with log_path.open("w") as log:
            completed = subprocess.run(
                [sys.executable, "-c", MEASURE_WRAPPER, str(result_path), *command],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if completed.returncode != 0:
            raise RuntimeError(
                f"command failed with exit code {completed.returncode}; see {log_path}:\n"
                + " ".join(command)
            )
        result = json.loads(result_path.read_text())
    return Measurement(
        wall_s=result["wall_s"], cpu_s=result["cpu_s"], peak_rss_mib=result["peak_kib"] / 1024.0
    )


def demo_dataset(workdir: Path, n_runs: int) -> Path:
    """Generate (or reuse) the fMRIPrep-sized one-subject demo with ``n_runs`` runs."""
    from bids_glm.demo.dataset import make_demo_dataset

    bids_dir = workdir / f"bids-fmriprep-runs{n_runs}"
    print(f"dataset: {bids_dir} ({n_runs} runs; generated if absent)", flush=True)
    make_demo_dataset(bids_dir, size="fmriprep", n_subjects=1, n_runs=n_runs)
    return bids_dir


def bids_glm_command(
    bids_dir: Path, output_dir: Path, work_dir: Path, args: argparse.Namespace
) -> list[str]:
    """The participant-level command line with the benchmark's model and contrasts."""
    command = [sys.executable, "-m", "bids_glm", str(bids_dir), str(output_dir), "participant"]
    command += ["--work-dir", str(work_dir), "--smoothing-fwhm", str(args.smoothing)]
    command += ["--noise-model", args.noise_model, "--n-cpus", str(args.n_cpus)]
    command += ["--fixed-effects", "unweighted"]
    command += ["--no-reports"]  # nilearn writes maps only; reports are not part of the race
    for name, expression in EXTRA_CONTRASTS.items():
        command += ["--contrast", f"{name}={expression}"]
    return command


def run_bids_glm(bids_dir: Path, tag: str, workdir: Path, args) -> tuple[Measurement, Path]:
    """Run bids-glm into a fresh ``workdir/<tag>`` folder; return the measurement and it."""
    folder = workdir / tag
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    output_dir = folder / "output"
    command = bids_glm_command(bids_dir, output_dir, folder / "work", args)
    measurement = measure(command, folder / "log.txt")
    return measurement, output_dir


def _run_label(path: Path) -> str:
    match = RUN_PATTERN.search(path.name)
    if match is None:
        raise ValueError(f"{path}: expected a run-<label> entity in the file name")
    return match.group(1)


def nilearn_spec(bids_dir: Path, bids_glm_output: Path, args) -> dict:
    """Inputs of the nilearn child: BOLD files paired by run with bids-glm's designs."""
    func_dir = bids_glm_output.resolve() / "sub-01" / "func"
    designs = {_run_label(p): p for p in func_dir.glob("*_run-*_design.tsv")}
    fmriprep_dir = bids_dir.resolve() / "derivatives" / "fmriprep"
    bolds = {_run_label(p): p for p in fmriprep_dir.glob(BOLD_PATTERN)}
    if not designs or sorted(designs) != sorted(bolds):
        raise ValueError(
            f"expected one design per BOLD run; designs for runs {sorted(designs)} in "
            f"{func_dir}, BOLD files for runs {sorted(bolds)}"
        )
    masks = [p for p in func_dir.glob("*_mask.nii.gz") if "_run-" not in p.name]
    if len(masks) != 1:
        raise ValueError(f"expected one combined mask in {func_dir}, found {masks}")
    runs = sorted(bolds)
    return {
        "bolds": [str(bolds[r]) for r in runs],
        "designs": [str(designs[r]) for r in runs],
        "runs": runs,
        "mask": str(masks[0]),
        "smoothing_fwhm_mm": args.smoothing,
        "noise_model": args.noise_model,
        "contrasts": CONTRASTS,
    }


def run_nilearn(spec: dict, tag: str, workdir: Path) -> tuple[Measurement, Path]:
    """Run the nilearn child into a fresh ``workdir/<tag>`` folder."""
    folder = workdir / tag
    shutil.rmtree(folder, ignore_errors=True)
    output_dir = folder / "output"
    output_dir.mkdir(parents=True)
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps({**spec, "output_dir": str(output_dir)}, indent=2))
    command = [sys.executable, str(Path(__file__).resolve()), "nilearn-child", str(spec_path)]
    return measure(command, folder / "log.txt"), output_dir


def nilearn_child(spec_path: Path) -> None:
    """The nilearn pipeline: fit all runs, compute and write every contrast's maps."""
    import pandas as pd
    from nilearn.glm.contrasts import compute_contrast, expression_to_contrast_vector
    from nilearn.glm.first_level import FirstLevelModel

    spec = json.loads(spec_path.read_text())
    output_dir = Path(spec["output_dir"])
    designs = [pd.read_csv(path, sep="\t") for path in spec["designs"]]
    model = FirstLevelModel(
        mask_img=spec["mask"],
        smoothing_fwhm=spec["smoothing_fwhm_mm"],
        noise_model=spec["noise_model"],
        signal_scaling=0,
        minimize_memory=True,
    )
    model.fit(spec["bolds"], design_matrices=designs)
    for name, expression in spec["contrasts"].items():
        maps = model.compute_contrast(expression, stat_type="t", output_type="all")
        for kind in NILEARN_MAPS:
            maps[kind].to_filename(output_dir / f"contrast-{name}_{kind}.nii.gz")
        if not spec["run_maps"]:
            continue
        for run, design, labels, results in zip(
            spec["runs"], designs, model.labels_, model.results_, strict=True
        ):
            weights = expression_to_contrast_vector(expression, list(design.columns))
            contrast = compute_contrast(labels, results, weights, stat_type="t")
            for kind in NILEARN_MAPS:
                image = model.masker_.inverse_transform(getattr(contrast, kind)())
                image.to_filename(output_dir / f"run-{run}_contrast-{name}_{kind}.nii.gz")


def _in_mask(path: Path, mask: np.ndarray) -> np.ndarray:
    """The in-mask values of a 3-D map, as float64."""
    return np.asarray(nib.load(path).dataobj, dtype=np.float64)[mask]


def _one(paths: Sequence[Path], what: str) -> Path:
    """The single subject-level path among ``paths`` (run-level files excluded)."""
    found = [p for p in paths if "_run-" not in p.name]
    if len(found) != 1:
        raise ValueError(f"expected one subject-level {what}, found {found}")
    return found[0]


def agreement(bids_glm_output: Path, nilearn_output: Path) -> list[Agreement]:
    """Max |dz| and effect differences of the subject-level maps, contrast by contrast.

    The relative effect difference is ``max |effect_bids - effect_nilearn|`` divided by
    ``max |effect_nilearn|`` over the in-mask voxels. NaN differences count as above the
    tolerance.
    """
    func_dir = bids_glm_output / "sub-01" / "func"
    mask = np.asarray(nib.load(_one(list(func_dir.glob("*_mask.nii.gz")), "mask")).dataobj) > 0
    rows = []
    for name in CONTRASTS:
        ours = {
            stat: _in_mask(
                _one(list(func_dir.glob(f"*_contrast-{name}_stat-{stat}_*.nii.gz")), stat), mask
            )
            for stat in ("z", "effect")
        }
        dz = np.abs(ours["z"] - _in_mask(nilearn_output / f"contrast-{name}_z_score.nii.gz", mask))
        effect = _in_mask(nilearn_output / f"contrast-{name}_effect_size.nii.gz", mask)
        rows.append(
            Agreement(
                contrast=name,
                max_abs_dz=float(np.nanmax(dz)),
                n_voxels_dz_above_tolerance=int(np.count_nonzero(~(dz <= DZ_TOLERANCE))),
                max_relative_effect_difference=float(
                    np.nanmax(np.abs(ours["effect"] - effect)) / np.nanmax(np.abs(effect))
                ),
                n_voxels=int(mask.sum()),
            )
        )
    return rows


TABLE_HEADER = (
    f"{'tool':<20} {'median s':>9} {'min s':>8} {'max s':>8} {'CPU s':>7} "
    f"{'peak MiB':>9} {'min MiB':>8} {'max MiB':>8}"
)


def _summary(label: str, measurements: Sequence[Measurement]) -> tuple[str, float, float]:
    """A table row (medians, min, max); also the median wall time and median peak."""
    walls = [m.wall_s for m in measurements]
    peaks = [m.peak_rss_mib for m in measurements]
    wall, peak = statistics.median(walls), statistics.median(peaks)
    cpu = statistics.median(m.cpu_s for m in measurements)
    line = (
        f"{label:<20} {wall:>9.2f} {min(walls):>8.2f} {max(walls):>8.2f} {cpu:>7.2f} "
        f"{peak:>9.0f} {min(peaks):>8.0f} {max(peaks):>8.0f}"
    )
    return line, wall, peak


def print_comparison(
    bids: Sequence[Measurement],
    nilearn: Mapping[str, Sequence[Measurement]],
    rows: Sequence[Agreement],
) -> None:
    """The timing/memory table, the ratios per nilearn variant and the agreement."""
    print("\n" + TABLE_HEADER + "\n" + "-" * len(TABLE_HEADER))
    bids_line, bids_wall, bids_peak = _summary("bids-glm", bids)
    print(bids_line)
    ratios = []
    for variant, measurements in nilearn.items():
        line, nilearn_wall, nilearn_peak = _summary(f"nilearn {variant}", measurements)
        print(line)
        ratios.append((variant, nilearn_wall / bids_wall, bids_peak / nilearn_peak))
    for variant, speedup, memory_fraction in ratios:
        time_met = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
        memory_met = "met" if memory_fraction <= TARGET_MEMORY_FRACTION else "NOT met"
        print(
            f"\nnilearn {variant} ({NILEARN_VARIANTS[variant]})\n"
            f"  time   nilearn / bids-glm : {speedup:6.2f}x   "
            f"(target >= {TARGET_SPEEDUP:.0f}x: {time_met})\n"
            f"  memory bids-glm / nilearn : {100 * memory_fraction:6.1f}%   "
            f"(target <= {100 * TARGET_MEMORY_FRACTION:.0f}%: {memory_met})"
        )
    print(
        f"\nsubject-level maps (bids-glm unweighted fixed effects vs nilearn multi-run), "
        f"{rows[0].n_voxels} in-mask voxels"
    )
    header = f"{'contrast':<27} {'max |dz|':>10} {'|dz|>1e-3':>10} {'max rel d(effect)':>18}"
    print(header + "\n" + "-" * len(header))
    for row in rows:
        print(
            f"{row.contrast:<27} {row.max_abs_dz:>10.2e} "
            f"{row.n_voxels_dz_above_tolerance:>10d} {row.max_relative_effect_difference:>18.2e}"
        )


def compare(args: argparse.Namespace) -> None:
    """Warm-up bids-glm, then alternate the nilearn variants and bids-glm ``args.repeats``
    times."""
    bids_dir = demo_dataset(args.workdir, args.runs)
    compile_bytecode()
    print("bids-glm warm-up run (designs and mask for nilearn)", flush=True)
    _, reference_output = run_bids_glm(bids_dir, "bids-glm-warmup", args.workdir, args)
    spec = nilearn_spec(bids_dir, reference_output, args)
    variants = list(NILEARN_VARIANTS) if args.nilearn == "both" else [args.nilearn]
    bids: list[Measurement] = []
    nilearn: dict[str, list[Measurement]] = {variant: [] for variant in variants}
    outputs: dict[str, Path] = {}
    for repeat in range(1, args.repeats + 1):
        for variant in variants:
            variant_spec = {**spec, "run_maps": variant == SAME_MAPS}
            tag = f"nilearn-{variant}"
            measurement, outputs[variant] = run_nilearn(variant_spec, tag, args.workdir)
            nilearn[variant].append(measurement)
            print(f"repeat {repeat}: nilearn {variant:<13} {_describe(measurement)}", flush=True)
        measurement, bids_output = run_bids_glm(bids_dir, "bids-glm", args.workdir, args)
        bids.append(measurement)
        print(f"repeat {repeat}: bids-glm {'':<13} {_describe(measurement)}", flush=True)
    print_comparison(bids, nilearn, agreement(bids_output, outputs[variants[0]]))
    print_tree_memory(bids_dir, args, nilearn)
    if SAME_MAPS in outputs:
        print_run_agreement(bids_output, outputs[SAME_MAPS], spec["runs"])


def print_tree_memory(
    bids_dir: Path, args: argparse.Namespace, nilearn: Mapping[str, Sequence[Measurement]]
) -> None:
    """bids-glm's whole process tree (workers, forked reducers): peak summed PSS of one
    more, sampled run, against nilearn's median peak (one process)."""
    from tree_memory import peak_tree_pss_mib  # a sibling script; Linux only

    if not sys.platform.startswith("linux"):
        return
    folder = args.workdir / "bids-glm-pss"
    shutil.rmtree(folder, ignore_errors=True)
    command = bids_glm_command(bids_dir, folder / "output", folder / "work", args)
    pss = peak_tree_pss_mib(command)
    shutil.rmtree(folder, ignore_errors=True)
    nilearn_peak = min(statistics.median(m.peak_rss_mib for m in v) for v in nilearn.values())
    print(
        f"\nbids-glm process tree, peak summed PSS (one sampled run): {pss:.0f} MiB "
        f"= {100 * pss / nilearn_peak:.1f}% of nilearn's peak"
    )


def print_run_agreement(bids_glm_output: Path, nilearn_output: Path, runs: Sequence[str]):
    """Max |dz| of the run-level z maps (nilearn's same-maps variant writes them)."""
    func_dir = bids_glm_output / "sub-01" / "func"
    mask = np.asarray(nib.load(_one(list(func_dir.glob("*_mask.nii.gz")), "mask")).dataobj) > 0
    print(f"\nrun-level z maps: max |dz| (voxels with |dz| > {DZ_TOLERANCE:g})")
    for name in CONTRASTS:
        cells = []
        for run in runs:
            (ours,) = func_dir.glob(f"*_run-{run}_*_contrast-{name}_stat-z_statmap.nii.gz")
            theirs = nilearn_output / f"run-{run}_contrast-{name}_z_score.nii.gz"
            dz = np.abs(_in_mask(ours, mask) - _in_mask(theirs, mask))
            n_above = np.count_nonzero(~(dz <= DZ_TOLERANCE))
            cells.append(f"run-{run} {np.nanmax(dz):.2e} ({n_above})")
        print(f"{name:<27} " + "   ".join(cells))


def scaling_check(args: argparse.Namespace) -> None:
    """bids-glm's peak memory and time on 2 versus 4 runs, alternating."""
    datasets = {n: demo_dataset(args.workdir, n) for n in (2, 4)}
    results: dict[int, list[Measurement]] = {2: [], 4: []}
    for repeat in range(1, args.repeats + 1):
        for n_runs, bids_dir in datasets.items():
            measurement, _ = run_bids_glm(bids_dir, f"bids-glm-runs{n_runs}", args.workdir, args)
            results[n_runs].append(measurement)
            print(f"repeat {repeat}: bids-glm {n_runs} runs {_describe(measurement)}", flush=True)
    print("\n" + TABLE_HEADER + "\n" + "-" * len(TABLE_HEADER))
    peaks = {}
    for n_runs, measurements in results.items():
        line, _, peaks[n_runs] = _summary(f"bids-glm {n_runs} runs", measurements)
        print(line)
    ratio = peaks[4] / peaks[2]
    print(
        f"\npeak memory 4 runs / 2 runs: {ratio:.3f}   (target <= {TARGET_RUN_SCALING}: "
        f"{'met' if ratio <= TARGET_RUN_SCALING else 'NOT met'})"
    )


def _describe(measurement: Measurement) -> str:
    return (
        f"{measurement.wall_s:7.2f} s wall  {measurement.cpu_s:7.2f} s CPU  "
        f"{measurement.peak_rss_mib:7.0f} MiB   (load average {os.getloadavg()[0]:.2f})"
    )


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "bids_glm_bench",
        help="datasets, outputs and logs (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=2, help="runs in the compared subject")
    parser.add_argument("--repeats", type=int, default=3, help="measured runs per tool")
    parser.add_argument("--noise-model", choices=("ols", "ar1"), default="ar1")
    parser.add_argument("--smoothing", type=float, default=5.0, help="FWHM in mm")
    parser.add_argument(
        "--n-cpus",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="bids-glm's --n-cpus (default: the available cores, %(default)s)",
    )
    parser.add_argument(
        "--nilearn",
        choices=(*NILEARN_VARIANTS, "both"),
        default="both",
        help=f"nilearn pipeline(s) to time: {SAME_MAPS!r} writes every map bids-glm writes "
        f"(run and subject level), {SUBJECT_MAPS!r} only the subject-level maps "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--scaling-check",
        action="store_true",
        help="also measure bids-glm on 2 and on 4 runs and print the peak-memory ratio",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the outputs (datasets are always kept)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, internally, the nilearn child) and return an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["nilearn-child"]:
        nilearn_child(Path(argv[1]))
        return 0
    args = build_parser().parse_args(argv)
    if args.runs < 1 or args.repeats < 1:
        raise SystemExit(f"--runs and --repeats must be >= 1, got {args.runs}, {args.repeats}")
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    blas = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}
    print(
        f"cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}; "
        f"BLAS environment: {blas or 'none set'}",
        flush=True,
    )
    if args.n_cpus >= 2 * THREADS_PER_WORKER:
        print(
            "note: bids-glm may use worker processes at this --n-cpus; the peak RSS is then "
            "that of the largest single process (ru_maxrss), not the sum over workers",
            flush=True,
        )
    compare(args)
    if args.scaling_check:
        scaling_check(args)
    if not args.keep:
        for tag in OUTPUT_FOLDERS:
            shutil.rmtree(args.workdir / tag, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
