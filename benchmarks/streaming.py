"""Run length against memory and time: bids-glm at 200 and 800 volumes, gzip, nilearn.

``python benchmarks/streaming.py --help`` lists the options; ``benchmarks/README.md``
describes what is run and measured. In short: single runs of 200 and 800 volumes on the 2 mm
MNI grid (97 x 115 x 97, ~340k in-mask voxels, TR 0.8 s, noise plus planted blobs, written
with the demo's fast gzip), bids-glm's participant level on each (5 mm, AR(1), no reports),
the one-core ISA-L inflate time of the 800-volume input, and nilearn 0.14 on the 200-volume
run; wall time and peak RSS of each child process, medians over ``--repeats``; then one more
run of each size sampled for the peak PSS of bids-glm's whole process tree (it reduces
volumes in a forked child, whose memory the largest process's RSS would not show).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from isal import igzip

from bids_glm.demo.files import (
    nifti_header,
    write_derivatives_description,
    write_json,
    write_nifti_gz,
    write_raw_description,
    write_tsv,
)
from bids_glm.demo.signal import event_regressor, simulate_events
from bids_glm.runtime.threads import BLAS_VARIABLES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_nilearn import (  # the sibling benchmark's measurement tools
    CONTRASTS,
    Measurement,
    bids_glm_command,
    compile_bytecode,
    nilearn_spec,
    run_bids_glm,
    run_nilearn,
)
from thread_schedstat import print_thread_times, thread_times
from tree_memory import peak_tree_pss_mib

TR_S = 0.8
CONDITIONS = ("face", "house", "scrambled")
TARGETS = {"memory_ratio": 1.25, "inflate_ratio": 2.0, "speedup": 15.0, "memory_share": 0.10}


@dataclass(frozen=True)
class Grid:
    """An MNI-sized grid at ``voxel_mm``: an ellipsoid brain and two planted blobs, in mm.

    At 2 mm it is the MNI152NLin2009Asym grid (97 x 115 x 97, ~340k brain voxels); finer
    grids cover the same box (1.5 mm: 129 x 153 x 129, ~805k brain voxels).
    """

    voxel_mm: float
    box_mm: tuple[float, float, float] = (194.0, 230.0, 194.0)
    semi_axes_mm: tuple[float, float, float] = (84.0, 92.0, 84.0)
    blobs_mm: tuple[tuple[str, tuple[float, float, float]], ...] = (
        ("face", (60.0, 120.0, 100.0)),  # centre from the box's corner
        ("house", (132.0, 120.0, 100.0)),
    )
    blob_radius_mm: float = 12.0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(round(side / self.voxel_mm) for side in self.box_mm)

    @property
    def affine(self) -> np.ndarray:
        affine = np.diag([self.voxel_mm] * 3 + [1.0])
        affine[:3, 3] = (
            np.array([0.0, -18.0, 18.0]) - self.voxel_mm * (np.asarray(self.shape) - 1) / 2
        )
        return affine

    @property
    def name(self) -> str:
        """The data folder's prefix: ``bids-mni`` at 2 mm, ``bids-mni1.5mm`` at 1.5 mm."""
        return "bids-mni" if self.voxel_mm == 2.0 else f"bids-mni{self.voxel_mm:g}mm"

    def axes(self) -> list[np.ndarray]:
        return np.ogrid[tuple(slice(0, n) for n in self.shape)]

    def brain(self) -> np.ndarray:
        """Boolean ellipsoid on the grid (the brain mask)."""
        centre = (np.asarray(self.shape) - 1) / 2
        semi_axes = np.asarray(self.semi_axes_mm) / self.voxel_mm
        radius = sum(
            ((a - c) / s) ** 2 for a, c, s in zip(self.axes(), centre, semi_axes, strict=True)
        )
        return radius <= 1.0

    def blob(self, centre_mm: tuple[float, float, float]) -> np.ndarray:
        """Boolean ball of `blob_radius_mm` around ``centre_mm``."""
        centre = np.asarray(centre_mm) / self.voxel_mm
        distance = sum((a - c) ** 2 for a, c in zip(self.axes(), centre, strict=True))
        return distance <= (self.blob_radius_mm / self.voxel_mm) ** 2


MNI_2MM = Grid(2.0)
FINE_GRIDS = {1.5: Grid(1.5)}


def _volumes(rng, n_volumes: int, grid: Grid, events) -> object:
    """int16 volumes: baseline, AR(0.3) noise, slow drift and planted responses."""
    flat_brain = grid.brain().ravel(order="F")
    n_total = flat_brain.size
    base = np.where(flat_brain, 800.0 + 200.0 * rng.random(n_total), 60.0).astype(np.float32)
    blob_gain = []
    for condition, centre_mm in grid.blobs_mm:
        inside = grid.blob(centre_mm)
        selected = events[events["trial_type"] == condition]
        regressor = event_regressor(
            selected["onset"].to_numpy(), selected["duration"].to_numpy(), n_volumes, TR_S
        )
        blob_gain.append((np.flatnonzero(inside.ravel(order="F")), 0.02 * regressor))
    noise = np.zeros(n_total, dtype=np.float32)
    sd = np.where(flat_brain, 12.0, 4.0).astype(np.float32)
    for t in range(n_volumes):
        noise *= np.float32(0.3)
        noise += sd * rng.standard_normal(n_total, dtype=np.float32)
        volume = base * np.float32(1.0 + 0.01 * np.sin(2 * np.pi * t * TR_S / 200.0)) + noise
        for index, regressor in blob_gain:
            volume[index] += base[index] * np.float32(regressor[t])
        yield np.rint(volume).astype(np.int16).tobytes()


def make_run(workdir: Path, n_volumes: int, grid: Grid = MNI_2MM) -> Path:
    """Write (or reuse) a one-run BIDS dataset with fMRIPrep-like derivatives."""
    bids_dir = workdir / f"{grid.name}-{n_volumes}"
    done = bids_dir / ".complete"
    if done.exists():
        return bids_dir
    started = time.perf_counter()
    rng = np.random.default_rng(n_volumes)
    raw_dir, deriv_dir = (
        bids_dir / "sub-01" / "func",
        bids_dir / "derivatives/fmriprep/sub-01/func",
    )
    raw_dir.mkdir(parents=True, exist_ok=True)
    deriv_dir.mkdir(parents=True, exist_ok=True)
    write_raw_description(
        bids_dir, "streaming benchmark", "faces", "simulated", TR_S, grid.shape[2]
    )
    write_derivatives_description(bids_dir)
    write_tsv(
        bids_dir / "participants.tsv",
        pd.DataFrame({"participant_id": ["sub-01"]}),
    )
    prefix = "sub-01_task-faces_run-1"
    events = simulate_events(rng, CONDITIONS, n_volumes * TR_S)
    write_tsv(raw_dir / f"{prefix}_events.tsv", events)
    brain = grid.brain()
    space = f"{prefix}_space-MNI152NLin2009cAsym"
    header = nifti_header((*grid.shape, n_volumes), np.int16, grid.affine, grid.voxel_mm, TR_S)
    preproc = deriv_dir / f"{space}_desc-preproc_bold.nii.gz"
    write_nifti_gz(preproc, header, _volumes(rng, n_volumes, grid, events))
    write_json(
        deriv_dir / f"{space}_desc-preproc_bold.json",
        {"RepetitionTime": TR_S, "TaskName": "faces"},
    )
    mask_bytes = brain.ravel(order="F").astype(np.uint8).tobytes()
    mask_header = nifti_header(grid.shape, np.uint8, grid.affine, grid.voxel_mm)
    write_nifti_gz(deriv_dir / f"{space}_desc-brain_mask.nii.gz", mask_header, [mask_bytes])
    (raw_dir / f"{prefix}_bold.nii.gz").unlink(missing_ok=True)
    (raw_dir / f"{prefix}_bold.nii.gz").hardlink_to(preproc)
    done.touch()
    print(f"wrote {bids_dir} in {time.perf_counter() - started:.0f} s", flush=True)
    return bids_dir


def preproc_path(bids_dir: Path) -> Path:
    return next((bids_dir / "derivatives/fmriprep/sub-01/func").glob("*_desc-preproc_bold.nii.gz"))


def inflate_seconds(path: Path) -> float:
    """Wall time of inflating ``path`` with ISA-L in this thread (one core), to nowhere."""
    buffer = bytearray(1 << 24)
    started = time.perf_counter()
    with igzip.open(path, "rb") as stream:
        while stream.readinto(buffer):
            pass
    return time.perf_counter() - started


def read_into_page_cache(path: Path) -> None:
    """Read ``path`` once, so a timed run inflates it from memory, not from the disk.

    The 200- and 800-volume inputs stay cached across the repeats; the 2,000-volume one (3 GB)
    is read once, after nilearn's runs have pushed it out of the cache: evicted
    (``posix_fadvise(DONTNEED)``), its run took 22.4 s and 37.9 s of CPU, cached 16.3 s and
    29.4 s (session 9): the disk's time (and the VM's CPU spent reading it), not bids-glm's.
    """
    with path.open("rb", buffering=0) as stream:
        buffer = bytearray(1 << 24)
        while stream.readinto(buffer):
            pass


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _row(label: str, measurements: Sequence[Measurement]) -> str:
    wall = [m.wall_s for m in measurements]
    peak = [m.peak_rss_mib for m in measurements]
    cpu = _median([m.cpu_s for m in measurements])
    return (
        f"{label:<26}{_median(wall):>9.2f}{min(wall):>8.2f}{max(wall):>8.2f}{cpu:>8.2f}"
        f"{_median(peak):>10.0f}{min(peak):>8.0f}{max(peak):>8.0f}"
    )


def _verdict(value: float, target: float, at_most: bool) -> str:
    ok = value <= target if at_most else value >= target
    return f"{'met' if ok else 'NOT met'} (target {'<=' if at_most else '>='} {target:g})"


def benchmark(args: argparse.Namespace) -> None:
    """Generate the runs, time every tool ``args.repeats`` times, print the table."""
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    short, long = make_run(workdir, 200), make_run(workdir, 800)
    compile_bytecode()
    results: dict[str, list[Measurement]] = {"bids-glm 200": [], "bids-glm 800": []}
    inflate: list[float] = []
    if not args.no_nilearn:
        results["nilearn 200"] = []
    for repeat in range(args.repeats):
        for volumes, bids_dir in ((200, short), (800, long)):
            measured, output = run_bids_glm(bids_dir, f"bids-glm-{volumes}", workdir, args)
            results[f"bids-glm {volumes}"].append(measured)
            if volumes == 200 and not args.no_nilearn:
                spec = {**nilearn_spec(short, output, args), "run_maps": False}
                measured, nilearn_output = run_nilearn(spec, "nilearn-200", workdir)
                results["nilearn 200"].append(measured)
                if repeat == 0:
                    print_agreement(output, nilearn_output)
        inflate.append(inflate_seconds(preproc_path(long)))
        print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    if args.long_volumes:
        bids_dir = make_run(workdir, args.long_volumes)
        read_into_page_cache(preproc_path(bids_dir))
        results[f"bids-glm {args.long_volumes}"] = [
            run_bids_glm(bids_dir, f"bids-glm-{args.long_volumes}", workdir, args)[0]
        ]
    tree_pss = {}
    for volumes, bids_dir in ((200, short), (800, long)):
        folder = workdir / f"bids-glm-{volumes}-pss"
        shutil.rmtree(folder, ignore_errors=True)
        command = bids_glm_command(bids_dir, folder / "output", folder / "work", args)
        tree_pss[f"bids-glm {volumes}"] = peak_tree_pss_mib(command)
    if args.fine_volumes:
        label, measurement, pss = fine_grid_run(workdir, args)
        results[label], tree_pss[label] = [measurement], pss
    print_table(results, _median(inflate), tree_pss, args.n_cpus)
    if args.threads:
        folder = workdir / "bids-glm-800-threads"
        shutil.rmtree(folder, ignore_errors=True)  # else bids-glm skips its complete outputs
        command = bids_glm_command(long, folder / "output", folder / "work", args)
        print("\nthreads of the 800-volume run (Linux schedstat):")
        print_thread_times(*thread_times(command))
    if args.breakdown:
        # in a child with single-threaded BLAS, as bids-glm runs it (idle BLAS threads would
        # spin and count as CPU time)
        blas = {name: "1" for name in BLAS_VARIABLES}
        command = [sys.executable, __file__, "--workdir", str(workdir), "--breakdown-only"]
        subprocess.run(command, env={**os.environ, **blas}, check=True)


def fine_grid_run(workdir: Path, args: argparse.Namespace) -> tuple[str, Measurement, float]:
    """One run of ``args.fine_volumes`` on the ``args.fine_mm`` grid: its wall, CPU, peak RSS,
    and the peak PSS of its process tree in a second run (a long run's memory on a fine grid,
    the case of multiband and 7T data)."""
    grid = FINE_GRIDS[args.fine_mm]
    bids_dir = make_run(workdir, args.fine_volumes, grid)
    read_into_page_cache(preproc_path(bids_dir))
    name = f"bids-glm-{args.fine_volumes}-{args.fine_mm:g}mm"
    measurement = run_bids_glm(bids_dir, name, workdir, args)[0]
    folder = workdir / f"{name}-pss"
    shutil.rmtree(folder, ignore_errors=True)
    command = bids_glm_command(bids_dir, folder / "output", folder / "work", args)
    label = f"bids-glm {args.fine_volumes} {args.fine_mm:g} mm"
    return label, measurement, peak_tree_pss_mib(command)


def print_agreement(bids_glm_output: Path, nilearn_output: Path) -> None:
    """Max |dz| of bids-glm's run-level z maps against nilearn's, over the mask."""
    func = bids_glm_output / "sub-01" / "func"
    mask_path = next(p for p in func.glob("*_mask.nii.gz") if "_run-" not in p.name)
    mask = np.asanyarray(nib.load(mask_path).dataobj) > 0
    for name in CONTRASTS:
        ours = next(func.glob(f"*_run-1_*_contrast-{name}_stat-z_statmap.nii.gz"))
        theirs = nilearn_output / f"contrast-{name}_z_score.nii.gz"
        dz = np.abs(
            np.asanyarray(nib.load(ours).dataobj)[mask] - nib.load(theirs).get_fdata()[mask]
        )
        print(
            f"agreement {name:<26} max |dz| {np.nanmax(dz):.2e}, "
            f"{np.count_nonzero(~(dz <= 1e-3))} of {dz.size} voxels above 1e-3",
            flush=True,
        )


def print_table(
    results: dict[str, list[Measurement]],
    inflate_s: float,
    tree_pss: dict[str, float],
    n_cpus: int,
) -> None:
    """Medians (min, max) of each tool, then the ratios against the targets.

    bids-glm's memory is the larger of its largest process's peak RSS (median) and its
    process tree's peak PSS (``tree_pss``, one sampled run). Beside the speed-up, its
    ceiling for the CPU time bids-glm used: nilearn's wall over bids-glm's CPU seconds
    spread over ``n_cpus`` cores, busy from start to end.
    """
    print(
        f"\n{'tool':<26}{'wall s':>9}{'min':>8}{'max':>8}{'CPU s':>8}"
        f"{'peak MiB':>10}{'min':>8}{'max':>8}"
    )
    for label, measurements in results.items():
        print(_row(label, measurements))
    print(f"{'ISA-L inflate 800 (1 core)':<26}{inflate_s:>9.2f}")
    for label, pss in tree_pss.items():
        print(f"{label + ' tree PSS':<26}{'':>33}{pss:>10.0f}  (whole process tree)")
    wall = {k: _median([m.wall_s for m in v]) for k, v in results.items()}
    peak = {k: _median([m.peak_rss_mib for m in v]) for k, v in results.items()}
    for label, pss in tree_pss.items():
        peak[label] = max(peak[label], pss)
    memory_ratio = peak["bids-glm 800"] / peak["bids-glm 200"]
    inflate_ratio = wall["bids-glm 800"] / inflate_s
    print(
        f"\npeak(800) / peak(200)           {memory_ratio:6.2f}  "
        + _verdict(memory_ratio, TARGETS["memory_ratio"], True)
    )
    print(
        f"wall(800) / inflate(800)        {inflate_ratio:6.2f}  "
        + _verdict(inflate_ratio, TARGETS["inflate_ratio"], True)
    )
    if "nilearn 200" in results:
        speedup = wall["nilearn 200"] / wall["bids-glm 200"]
        share = peak["bids-glm 200"] / peak["nilearn 200"]
        print(
            f"nilearn / bids-glm wall (200)   {speedup:6.1f}  "
            + _verdict(speedup, TARGETS["speedup"], False)
        )
        cpu_s = _median([m.cpu_s for m in results["bids-glm 200"]])
        print(
            f"  ceiling at this CPU time      {wall['nilearn 200'] / (cpu_s / n_cpus):6.1f}  "
            f"(nilearn wall / (bids-glm {cpu_s:.2f} CPU s / {n_cpus} cores))"
        )
        print(
            f"bids-glm / nilearn peak (200)   {share:6.3f}  "
            + _verdict(share, TARGETS["memory_share"], True)
        )


def breakdown(bids_dir: Path, n_volumes: int) -> None:
    """CPU seconds of each stage of reading and fitting one run, in this process.

    Everything in this thread (``n_threads=0``, as ``--n-cpus 1`` runs), so that CPU time
    (which other jobs on the machine disturb far less than wall time) attributes cleanly: with
    a forked smoothing child, this process's CPU time would leave the child's work out.
    """
    from bids_glm.glm.cross_products import CrossProductAccumulator
    from bids_glm.glm.fit_from_sums import fit_from_sums
    from bids_glm.image.stream import stream_masked_series

    bold = preproc_path(bids_dir)
    mask_image = nib.load(next(bold.parent.glob("*_desc-brain_mask.nii.gz")))
    mask = np.asanyarray(mask_image.dataobj) > 0
    design = np.loadtxt(
        next((bids_dir.parent / f"bids-glm-{n_volumes}").rglob("*_run-1_*_design.tsv")),
        delimiter="\t",
        skiprows=1,
    )
    stages = {}

    def cpu(label, work):
        started = time.process_time()
        result = work()
        stages[label] = time.process_time() - started
        return result

    cpu("inflate (ISA-L)", lambda: inflate_seconds(bold))
    read = lambda consume: stream_masked_series(  # noqa: E731
        bold, mask, mask_image.affine, consume, 5.0, n_threads=0
    )
    cpu("inflate + convert, smooth, reduce", lambda: read(lambda block: None))
    sums = CrossProductAccumulator(design, int(mask.sum()), n_threads=1)
    cpu("... + accumulate the sums", lambda: read(sums.add))
    names = [f"c{k}" for k in range(design.shape[1])]
    cpu(
        "fit from the sums (AR(1))",
        lambda: fit_from_sums(design, sums.result(), names, n_threads=1),
    )
    print(f"\nCPU seconds, {n_volumes} volumes, p = {design.shape[1]}, all in one thread:")
    for label, seconds in stages.items():
        print(f"  {label:<36}{seconds:7.2f}  ({1000 * seconds / n_volumes:.1f} ms/volume)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = Path(__import__("tempfile").gettempdir()) / "bids_glm_stream_bench"
    parser.add_argument("--workdir", type=Path, default=default_dir)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-cpus", type=int, default=2)
    parser.add_argument(
        "--long-volumes",
        type=int,
        default=0,
        help="also time one run of this many volumes (e.g. 2000)",
    )
    parser.add_argument(
        "--fine-volumes",
        type=int,
        default=0,
        help="also time one run of this many volumes on a finer grid (--fine-mm)",
    )
    parser.add_argument("--fine-mm", type=float, choices=sorted(FINE_GRIDS), default=1.5)
    parser.add_argument("--no-nilearn", action="store_true")
    parser.add_argument(
        "--breakdown", action="store_true", help="also print CPU seconds per stage (800 volumes)"
    )
    parser.add_argument(
        "--threads",
        action="store_true",
        help="also run the 800-volume run once more and print its threads' CPU and waiting",
    )
    parser.add_argument("--breakdown-only", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(smoothing=5.0, noise_model="ar1")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.breakdown_only:
        breakdown(make_run(args.workdir, 800), 800)
        return 0
    benchmark(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
