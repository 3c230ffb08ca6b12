"""Time of single-trial estimates (LSS, LSA, brute-force LSS) beside the ordinary GLM of a run.

``python benchmarks/single_trial.py [--trials 60] [--voxels 227000] [--scans 200]
[--repeats 3] [--brute-force-repeats 3] [--threads 2] [--noise-models ols ar1]
[--pipeline-repeats 3] [--workdir DIR] [--smoothing MM]``
(``--brute-force-repeats 0`` leaves brute force out, ``--pipeline-repeats 0`` the pipeline)

One fMRIPrep-sized run held in memory (the in-mask voxels of the demo's ``fmriprep`` preset,
97 x 115 x 97 at 2 mm: ~227k voxels, 200 volumes, TR 2 s), so that only the fits are timed
(reading and smoothing are the same for every estimator): AR(1) noise, slow drifts, six
random-walk motion confounds, and ``--trials`` events (three conditions, 1 s, ISI 4-8 s: the
responses overlap) whose amplitudes differ from trial to trial in a tenth of the voxels. The
designs are built as the pipeline builds them (``make_design_matrix``, ``trial_design``).

Timed, per noise model (medians of ``--repeats``; wall and CPU seconds):

* ``GLM``: ``fit_glm`` of the ordinary design (one column per condition);
* ``LSS``: ``lss_fit`` (one pass over the data, every trial's model from it);
* ``LSA``: ``lsa_fit`` of the LSA design (one column per trial; ``fit_glm``'s estimates, a
  block of voxels at a time);
* ``brute-force LSS``: ``fit_glm`` of every trial's LSS design, one after another;
* ``GLM's OLS pass``: the part of ``fit_glm`` that ``lss_fit`` does again (``ols_pass``: the
  ordinary OLS fit, its residuals' moments and, for AR(1), ``N(X)^T E``), for the reading
  "LSS's cost beyond the GLM if the GLM handed its pass over": ``(LSS - that) / GLM``.

Target (issue 19): LSS at most 2x the GLM. BLAS runs one thread; bids-glm's own threads
(``--threads``) share the voxels, as in a run of the pipeline.

Then the pipeline as users run it (``--pipeline-repeats``): bids-glm's participant level on
the demo generator's ``fmriprep`` subject with one run (97 x 115 x 97 voxels x 200 volumes,
60 events), ``--no-reports``, AR(1), ``--smoothing`` mm, ``--n-cpus --threads``, without and
with ``--single-trial lss``, alternating, each in its own child process (the ``measure``
wrapper of ``compare_nilearn.py``: wall, CPU, peak RSS), after one unmeasured warm-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bids_glm.runtime.threads import limit_threads

sys.path.insert(0, str(Path(__file__).resolve().parent))

CONDITIONS = ("face", "house", "scrambled")
TR_S = 2.0
TARGET_RATIO = 2.0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--voxels", type=int, default=227_000)
    parser.add_argument("--scans", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--brute-force-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--noise-models", nargs="+", default=["ols", "ar1"])
    parser.add_argument("--pipeline-repeats", type=int, default=3)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bids_glm_single_trial"
    )
    parser.add_argument("--smoothing", type=float, default=5.0, help="FWHM in mm")
    return parser.parse_args()


def _run(args: argparse.Namespace):
    """Events, the ordinary and LSA designs, and the (scans, voxels) float32 data."""
    import numpy as np
    import pandas as pd

    from bids_glm.design.hrf_spec import parse_hrf_model
    from bids_glm.design.matrix import frame_times, make_design_matrix
    from bids_glm.design.single_trial import trial_design

    rng = np.random.default_rng(0)
    onsets = 4.0 + np.concatenate([[0.0], np.cumsum(rng.uniform(4.0, 8.0, args.trials - 1))])
    if onsets[-1] > args.scans * TR_S - 20.0:
        raise SystemExit(f"{args.trials} trials (ISI 4-8 s) do not fit in {args.scans} scans")
    events = pd.DataFrame(
        {
            "onset": np.round(onsets, 2),
            "duration": 1.0,
            "trial_type": [CONDITIONS[k % 3] for k in rng.permutation(args.trials)],
            "modulation": 1.0,
        }
    )
    motion = pd.DataFrame(
        np.cumsum(rng.normal(0.0, 0.05, (args.scans, 6)), axis=0),
        columns=[f"motion{k}" for k in range(6)],
    )
    hrf = parse_hrf_model("glover")
    times = frame_times(args.scans, TR_S)
    ordinary = make_design_matrix(times, events, hrf_model=hrf, confounds=motion)
    trials = trial_design(ordinary, events, list(CONDITIONS), hrf)
    noise = rng.standard_normal((args.scans, args.voxels), dtype=np.float32)
    for t in range(1, args.scans):
        noise[t] += np.float32(0.3) * noise[t - 1]
    active = args.voxels // 10
    amplitudes = rng.normal(1.0, 0.5, (args.trials, active)).astype(np.float32)
    trial_columns = trials.matrix[list(trials.trials["column"])].to_numpy(np.float32)
    noise[:, :active] += trial_columns @ amplitudes
    return ordinary, trials, noise


def _timed(function, repeats: int) -> tuple[list[float], list[float], object]:
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, result


def _pipeline_command(bids_dir: Path, folder: Path, lss: bool, args) -> list[str]:
    """The participant-level command line, with or without ``--single-trial lss``."""
    argv = [sys.executable, "-m", "bids_glm", str(bids_dir), str(folder / "output")]
    argv += ["participant", "--work-dir", str(folder / "work"), "--n-cpus", str(args.threads)]
    argv += ["--smoothing-fwhm", str(args.smoothing), "--noise-model", "ar1", "--no-reports"]
    return argv + (["--single-trial", "lss"] if lss else [])


def _pipeline_run(bids_dir: Path, lss: bool, args):
    """One measured participant-level run in a fresh folder."""
    from compare_nilearn import measure

    folder = args.workdir / ("lss" if lss else "glm")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    result = measure(_pipeline_command(bids_dir, folder, lss, args), folder / "log.txt")
    shutil.rmtree(folder, ignore_errors=True)
    return result


def pipeline(args: argparse.Namespace) -> list[str]:
    """Time the participant level on one run without and with LSS; return the summary lines."""
    from compare_nilearn import demo_dataset

    bids_dir = demo_dataset(args.workdir, 1)
    _pipeline_run(bids_dir, True, args)  # warm the page cache and the imports
    runs: dict[bool, list] = {False: [], True: []}
    for _ in range(args.pipeline_repeats):
        for lss in (False, True):
            runs[lss].append(_pipeline_run(bids_dir, lss, args))
    header = f"{'median s':>9} {'min s':>7} {'max s':>7} {'CPU s':>7} {'peak MiB':>9}"
    lines = [f"{'pipeline (ar1)':22} {header}"]
    medians = {}
    for lss, label in ((False, "participant"), (True, "participant + LSS")):
        walls = [m.wall_s for m in runs[lss]]
        cpu = statistics.median(m.cpu_s for m in runs[lss])
        peak = statistics.median(m.peak_rss_mib for m in runs[lss])
        medians[lss] = (statistics.median(walls), cpu, peak)
        lines.append(
            f"{label:22} {medians[lss][0]:9.2f} {min(walls):7.2f} {max(walls):7.2f} "
            f"{cpu:7.2f} {peak:9.0f}"
        )
    (wall0, cpu0, peak0), (wall1, cpu1, peak1) = medians[False], medians[True]
    lines.append(
        f"pipeline: with LSS / without: wall {wall1 / wall0:.2f}x, CPU {cpu1 / cpu0:.2f}x, "
        f"peak {peak1 / peak0:.2f}x; LSS's added time / the run's ordinary GLM: "
        f"wall {(wall1 - wall0) / wall0:.2f}x, CPU {(cpu1 - cpu0) / cpu0:.2f}x"
    )
    return lines


def main() -> None:
    """Time the fits per noise model, then the pipeline; print the tables and ratios."""
    args = _arguments()
    limit_threads(args.threads)
    summary = fits(args)
    if args.pipeline_repeats:
        print("\n".join(pipeline(args)))
    print("\nsummary")
    print("\n".join(summary))


def fits(args: argparse.Namespace) -> list[str]:
    """Build the run, time the four fits per noise model, print the table; return ratios."""
    import numpy as np

    from bids_glm.glm.fit import fit_glm
    from bids_glm.glm.lsa import lsa_fit
    from bids_glm.glm.ols import design_operators, ols_pass
    from bids_glm.glm.single_trial import lsa_layout, lss_design, lss_fit

    ordinary, trials, data = _run(args)
    lsa = trials.matrix.to_numpy()
    columns = list(trials.matrix.columns)
    layout = lsa_layout(columns, list(trials.trials["column"]), list(trials.trials["condition"]))
    print(
        f"run: {args.scans} scans x {args.voxels} voxels, {args.trials} trials, ordinary design "
        f"{ordinary.shape[1]} columns, LSA {lsa.shape[1]}; threads {args.threads}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load {os.getloadavg()[0]:.1f}"
    )

    def brute_force(noise_model: str) -> np.ndarray:
        fits = []
        for trial in range(layout.n_trials):
            model = lss_design(lsa, layout, trial)
            names = [str(k) for k in range(model.shape[1])]
            fits.append(fit_glm(model, data, names, noise_model=noise_model).beta[0])
        return np.stack(fits)

    print(f"{'noise':6} {'fit':16} {'median s':>9} {'min s':>7} {'max s':>7} {'CPU s':>7}")
    summary = []
    for noise_model in args.noise_models:
        jobs = {
            "GLM": (
                lambda nm=noise_model: fit_glm(
                    ordinary.to_numpy(), data, list(ordinary.columns), noise_model=nm
                ),
                args.repeats,
            ),
            "LSS": (lambda nm=noise_model: lss_fit(lsa, data, layout, nm).beta, args.repeats),
            "LSA": (lambda nm=noise_model: lsa_fit(lsa, data, layout, nm).beta, args.repeats),
            "GLM's OLS pass": (
                lambda nm=noise_model: ols_pass(
                    design_operators(ordinary.to_numpy()),
                    data,
                    4096,  # fit_glm's default
                    lag_cross=nm == "ar1",
                    n_threads=args.threads,
                ),
                args.repeats,
            ),
        }
        if args.brute_force_repeats:  # 0: skip brute force (minutes on the full run)
            jobs["brute-force LSS"] = (
                lambda nm=noise_model: brute_force(nm),
                args.brute_force_repeats,
            )
        summary.extend(_time_and_compare(noise_model, jobs))
    return summary


def _time_and_compare(noise_model: str, jobs: dict) -> list[str]:
    """Time ``jobs`` (name -> (function, repeats)) alternately; print them; return ratios."""
    import numpy as np

    walls, cpus, results = {name: [] for name in jobs}, {name: [] for name in jobs}, {}
    for repeat in range(max(repeats for _, repeats in jobs.values())):
        for name, (function, repeats) in jobs.items():
            if repeat < repeats:
                wall, cpu, results[name] = _timed(function, 1)
                walls[name] += wall
                cpus[name] += cpu
    medians = {name: statistics.median(values) for name, values in walls.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpus.items()}
    for name in jobs:
        print(
            f"{noise_model:6} {name:16} {medians[name]:9.2f} {min(walls[name]):7.2f} "
            f"{max(walls[name]):7.2f} {cpu_medians[name]:7.2f}",
            flush=True,
        )
    ratio = medians["LSS"] / medians["GLM"]
    lsa_cpu = cpu_medians["LSA"] / cpu_medians["GLM"]
    lines = [
        f"{noise_model:6} fit: LSS / GLM wall {ratio:.2f}x, CPU "
        f"{cpu_medians['LSS'] / cpu_medians['GLM']:.2f}x (target <= {TARGET_RATIO:g}x: "
        f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}); LSA / GLM wall "
        f"{medians['LSA'] / medians['GLM']:.2f}x, CPU {lsa_cpu:.2f}x"
    ]
    shared = {
        clock: (values["LSS"] - values["GLM's OLS pass"]) / values["GLM"]
        for clock, values in (("wall", medians), ("CPU", cpu_medians))
    }
    lines.append(
        f"{noise_model:6} fit: (LSS - GLM's OLS pass) / GLM: wall {shared['wall']:.2f}x, "
        f"CPU {shared['CPU']:.2f}x (LSS's cost if the GLM handed its pass over)"
    )
    if "brute-force LSS" in results:
        scale = np.abs(results["brute-force LSS"]).max()
        difference = np.abs(results["LSS"] - results["brute-force LSS"]) / scale
        lines.append(
            f"{noise_model:6} fit: brute force / LSS wall "
            f"{medians['brute-force LSS'] / medians['LSS']:.1f}x, CPU "
            f"{cpu_medians['brute-force LSS'] / cpu_medians['LSS']:.1f}x; |LSS - brute force| / "
            f"max: max {difference.max():.1e}, voxels*trials > 1e-6: "
            f"{(difference > 1e-6).mean():.2%}"
        )
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
