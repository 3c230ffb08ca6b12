"""Wall time and peak memory of one fsLR den-91k CIFTI run (300 volumes) through bids-glm.

``python benchmarks/surface.py [--volumes 300] [--repeats 3] [--noise-model ar1]
[--smoothing-fwhm 6]`` writes a
one-run dataset whose ``..._space-fsLR_den-91k_bold.dtseries.nii`` has fMRIPrep's 91,282
grayordinates (29,696 left and 29,716 right cortex vertices of 32,492 each, 31,870
subcortical voxels), then runs ``bids-glm participant --space fsLR`` in a child process
``--repeats`` times and prints the medians of: the participant level's wall time, the run's
fit as bids-glm logs it ("fitted ... in X s": read, scale, GLM), and the child's peak
resident memory (``VmHWM``: ``ru_maxrss`` would count this process's memory at the fork,
which holds the generated run). Targets (issue #14): fit under 3 s, peak under 500 MB on
2 cores. With ``--smoothing-fwhm``, fsLR 32k-sized meshes (Fibonacci spheres of 32,492
points) are written too and the data are smoothed (cortex along the meshes, the voxels
within their structure) as part of the fit's read.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.cifti2 import cifti2_axes

from bids_glm.demo.signal import event_regressor, simulate_events
from bids_glm.demo.surface_mesh import fibonacci_sphere, placed, write_mesh

TR_S = 2.0
N_CORTEX = {"CortexLeft": 29696, "CortexRight": 29716}  # fsLR 32k without the medial wall
N_VERTICES = 32492
N_SUBCORTICAL = 31870
TARGET_FIT_S = 3.0
TARGET_PEAK_MB = 500.0
FITTED = re.compile(r"fitted \w+ on \d+ \w+ x \d+ volumes in ([0-9.]+) s")


def brain_models() -> cifti2_axes.BrainModelAxis:
    """91,282 grayordinates laid out as fMRIPrep's fsLR den-91k."""
    axis = None
    for name, n in N_CORTEX.items():
        keep = np.zeros(N_VERTICES, dtype=bool)
        keep[:n] = True
        part = cifti2_axes.BrainModelAxis.from_mask(keep, name=name)
        axis = part if axis is None else axis + part
    mask = np.zeros((40, 40, 20), dtype=bool)
    mask.reshape(-1)[:N_SUBCORTICAL] = True
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return axis + cifti2_axes.BrainModelAxis.from_mask(mask, name="thalamus_left", affine=affine)


def make_dataset(root: Path, n_volumes: int) -> None:
    """One subject, one run of 91k grayordinates, a planted patch."""
    rng = np.random.default_rng(0)
    (root / "sub-01" / "func").mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "b", "BIDSVersion": "1.9.0"}')
    prep = root / "derivatives" / "fmriprep"
    (prep / "sub-01" / "func").mkdir(parents=True)
    (prep / "dataset_description.json").write_text(
        json.dumps({"Name": "fMRIPrep", "BIDSVersion": "1.9.0", "DatasetType": "derivative"})
    )
    events = simulate_events(rng, ("face", "house", "scrambled"), n_volumes * TR_S)
    events.to_csv(
        root / "sub-01" / "func" / "sub-01_task-faces_run-1_events.tsv", sep="\t", index=False
    )
    axis = brain_models()
    data = 1000.0 + 10.0 * rng.standard_normal((n_volumes, len(axis)), dtype=np.float32)
    face = events[events.trial_type == "face"]
    response = event_regressor(face.onset.to_numpy(), face.duration.to_numpy(), n_volumes, TR_S)
    data[:, 1000:1500] += (25.0 * response[:, None]).astype(np.float32)
    series = cifti2_axes.SeriesAxis(0.0, TR_S, n_volumes, unit="SECOND")
    image = nib.Cifti2Image(data, header=(series, axis))
    image.nifti_header.set_intent("ConnDenseSeries")
    name = "sub-01_task-faces_run-1_space-fsLR_den-91k_bold"
    image.to_filename(prep / "sub-01" / "func" / f"{name}.dtseries.nii")
    (prep / "sub-01" / "func" / f"{name}.json").write_text(json.dumps({"RepetitionTime": TR_S}))


def write_meshes(folder: Path) -> None:
    """fsLR 32k-sized left and right meshes, named as fMRIPrep names a subject's."""
    sphere = fibonacci_sphere(N_VERTICES)
    for hemi in ("L", "R"):
        write_mesh(folder / f"hemi-{hemi}_midthickness.surf.gii", placed(sphere, hemi), hemi)


def measure(bids: Path, out: Path, noise_model: str, fwhm_mm: float) -> tuple[float, float, float]:
    """Wall time (s), logged fit time (s) and peak RSS (MB) of one participant level."""
    command = [sys.executable, "-c", CHILD, str(bids), str(out), noise_model, str(fwhm_mm)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bids-glm failed ({done.returncode}):\n{done.stderr[-2000:]}")
    fit = FITTED.search(done.stderr)
    peak_kb = float(done.stdout.strip().splitlines()[-1])
    return wall_s, float(fit.group(1)) if fit else float("nan"), peak_kb / 1024.0


# The child: run the participant level, print its own peak RSS (kB) last.
CHILD = """
import sys
from bids_glm.cli.main import main
bids, out, noise, fwhm = sys.argv[1:5]
smoothing = ["--smoothing-fwhm", fwhm, "--surface-mesh-dir", bids + "/code/meshes"]
code = main([bids, out, "participant", "--space", "fsLR", "--skip-bids-validator",
             "--no-pdf", "--noise-model", noise, "--n-cpus", "2", "--overwrite",
             *(smoothing if float(fwhm) > 0 else [])])
with open("/proc/self/status") as status:
    print(next(line for line in status if line.startswith("VmHWM:")).split()[1])
sys.exit(code)
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--noise-model", choices=("ols", "ar1"), default="ar1")
    parser.add_argument("--smoothing-fwhm", type=float, default=0.0, help="mm (0: none)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        bids = Path(folder) / "bids"
        make_dataset(bids, args.volumes)
        if args.smoothing_fwhm > 0:
            write_meshes(bids / "code" / "meshes")
        size_mb = sum(p.stat().st_size for p in bids.rglob("*.nii")) / 2**20
        print(f"fsLR den-91k: 91282 grayordinates x {args.volumes} volumes ({size_mb:.0f} MB)")
        results = [
            measure(bids, Path(folder) / f"out{i}", args.noise_model, args.smoothing_fwhm)
            for i in range(args.repeats)
        ]
    wall, fit, peak = (statistics.median(values) for values in zip(*results, strict=True))
    smoothing = f"{args.smoothing_fwhm:g} mm smoothing" if args.smoothing_fwhm else "no smoothing"
    print(f"noise model {args.noise_model}, {smoothing}, medians of {args.repeats}:")
    print(f"  participant level wall   {wall:6.2f} s")
    verdict = "meets" if fit < TARGET_FIT_S else "misses"
    print(f"  run fit (read+GLM)       {fit:6.2f} s   ({verdict} target < {TARGET_FIT_S} s)")
    verdict = "meets" if peak < TARGET_PEAK_MB else "misses"
    print(f"  peak RSS                 {peak:6.0f} MB  ({verdict} target < {TARGET_PEAK_MB} MB)")


if __name__ == "__main__":
    main()
