"""``--preset spm12`` against the default mode on one fMRIPrep-sized subject.

    python benchmarks/spm12_preset.py [--workdir DIR] [--runs 2] [--repeats 3] [--n-cpus 2]
        [--smoothing-fwhm MM]

Both modes run in their own child process on the demo generator's ``fmriprep`` subject
(97 x 115 x 97 voxels x 200 volumes per run), unsmoothed unless ``--smoothing-fwhm`` (each
mode's own smoothing: scipy's Gaussian, SPM's kernel), AR(1), 8 contrasts, no reports:
the default mode fits each run then fixed effects; the preset fits SPM12's one multi-session
model (implicit 0.8 threshold mask intersected with the first run's brain mask as ``--mask``).
Prints median / min / max wall time, CPU time and peak RSS of each, and their ratios.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_nilearn import EXTRA_CONTRASTS, Measurement, demo_dataset, measure


def command(bids_dir: Path, folder: Path, preset: bool, options: argparse.Namespace) -> list[str]:
    """The bids-glm command line of one mode."""
    argv = [sys.executable, "-m", "bids_glm", str(bids_dir), str(folder / "output")]
    argv += ["participant", "--work-dir", str(folder / "work"), "--n-cpus", str(options.n_cpus)]
    argv += ["--smoothing-fwhm", str(options.smoothing_fwhm)]
    argv += ["--noise-model", "ar1", "--no-reports"]
    for name, expression in EXTRA_CONTRASTS.items():
        argv += ["--contrast", f"{name}={expression}"]
    if preset:
        masks = sorted(bids_dir.glob("derivatives/fmriprep/sub-01/func/*_desc-brain_mask.nii.gz"))
        argv += ["--preset", "spm12", "--mask", str(masks[0])]
    return argv


def run_mode(bids_dir: Path, preset: bool, options: argparse.Namespace) -> Measurement:
    """One measured run of a mode, in a fresh folder."""
    folder = options.workdir / ("spm12" if preset else "default")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return measure(command(bids_dir, folder, preset, options), folder / "log.txt")


def summary(label: str, runs: list[Measurement]) -> str:
    walls = [m.wall_s for m in runs]
    cpu = statistics.median(m.cpu_s for m in runs)
    peak = statistics.median(m.peak_rss_mib for m in runs)
    return (
        f"{label:<16}{statistics.median(walls):>9.2f}{min(walls):>9.2f}{max(walls):>9.2f}"
        f"{cpu:>9.2f}{peak:>10.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bids_glm_bench"
    )
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-cpus", type=int, default=2)
    parser.add_argument("--smoothing-fwhm", type=float, default=0.0, metavar="MM")
    args = parser.parse_args()
    bids_dir = demo_dataset(args.workdir, args.runs)
    run_mode(bids_dir, False, args)  # warm the page cache
    results: dict[bool, list[Measurement]] = {False: [], True: []}
    for _ in range(args.repeats):
        for preset in (False, True):
            results[preset].append(run_mode(bids_dir, preset, args))
    print(f"{'mode':<16}{'median s':>9}{'min s':>9}{'max s':>9}{'CPU s':>9}{'peak MiB':>10}")
    print(summary("default", results[False]))
    print(summary("--preset spm12", results[True]))
    wall = [statistics.median(m.wall_s for m in results[p]) for p in (False, True)]
    peak = [statistics.median(m.peak_rss_mib for m in results[p]) for p in (False, True)]
    print(f"spm12 / default: time {wall[1] / wall[0]:.2f}x, peak memory {peak[1] / peak[0]:.2f}x")
    for preset in (False, True):
        shutil.rmtree(args.workdir / ("spm12" if preset else "default"), ignore_errors=True)


if __name__ == "__main__":
    main()
