"""Where one participant run's time goes, phase by phase; A/B of source trees in pairs.

``python benchmarks/phases.py [--volumes 200] [--pairs 6] [--compare SOURCE_DIR]`` runs the
streaming benchmark's participant command (`streaming.py`'s MNI run, 5 mm, AR(1), 8 contrasts,
no reports) in a child process that times, from its own start: the start-up (to the first
call of `stream_masked_series`), the stream, the fit (to the end of `fit_from_ols`) and the
tail (to the end of the run), with the process's CPU seconds of start-up and tail. With
``--compare``, a checkout of another revision (e.g. ``git worktree add /tmp/base HEAD~1``) runs
on ``PYTHONPATH`` alternately with this one (ABBA...), and the medians of each phase and of
the pairs' differences are printed: on a shared machine whose speed drifts by ~8 % within an
hour, only differences within pairs resolve ~0.03 s. Both trees' bytecode is compiled first.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHASES = ("startup", "stream", "fit", "tail", "total", "startup_cpu", "tail_cpu")


def child(result_path: Path, argv: list[str]) -> None:
    """Run bids-glm's ``main`` on ``argv`` here, timing its phases into ``result_path``."""
    started = time.perf_counter()
    from bids_glm.runtime.threads import limit_threads

    limit_threads(2)  # before numpy loads, as the command-line entry point does
    _own_boilerplate()
    import bids_glm.cli.main as cli

    marks: dict[str, float] = {}

    def timed(module, name: str) -> None:
        function = getattr(module, name)

        def wrapper(*args, **kwargs):
            marks[f"{name}+"] = time.perf_counter() - started
            marks[f"{name}+cpu"] = time.process_time()
            result = function(*args, **kwargs)
            marks[f"{name}-"] = time.perf_counter() - started
            marks[f"{name}-cpu"] = time.process_time()
            return result

        setattr(module, name, wrapper)

    start_up_done = cli._start_up_done

    def hooked_start_up_done() -> None:  # the pipeline's modules are loaded by now
        import bids_glm.pipeline.run_fit as run

        try:
            import bids_glm.pipeline.fit_steps as steps
        except ImportError:  # a tree from before run_fit.py was split (--compare)
            steps = run
        timed(run, "stream_masked_series")
        timed(steps, "fit_from_ols")
        start_up_done()

    cli._start_up_done = hooked_start_up_done
    if cli.main(argv) != 0:
        raise SystemExit("bids-glm failed")
    end, end_cpu = time.perf_counter() - started, time.process_time()
    stream_start, stream_end = marks["stream_masked_series+"], marks["stream_masked_series-"]
    phases = {
        "startup": stream_start,
        "stream": stream_end - stream_start,
        "fit": marks["fit_from_ols-"] - stream_end,
        "tail": end - marks["fit_from_ols-"],
        "total": end,
        "startup_cpu": marks["stream_masked_series+cpu"],
        "tail_cpu": end_cpu - marks["fit_from_ols-cpu"],
    }
    result_path.write_text(json.dumps(phases))


def _own_boilerplate() -> None:
    """Make ``bids_glm.boilerplate`` the imported tree's own templates folder.

    With an editable install it is this checkout's ``boilerplate/`` whatever ``PYTHONPATH``
    says, and a compared revision's code may not render this checkout's templates.
    """
    import bids_glm

    folder = Path(bids_glm.__file__).resolve().parents[1] / "boilerplate"
    if not (folder / "__init__.py").exists():
        return
    spec = importlib.util.spec_from_file_location(
        "bids_glm.boilerplate", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["bids_glm.boilerplate"] = module
    spec.loader.exec_module(module)


def run_once(source: Path | None, bids_dir: Path, args: argparse.Namespace) -> dict:
    """One timed run in a fresh child, ``source`` (a checkout's root) first on the path."""
    from compare_nilearn import bids_glm_command

    with tempfile.TemporaryDirectory(prefix="bids-glm-phases-") as scratch:
        folder = Path(scratch)
        command = bids_glm_command(bids_dir, folder / "output", folder / "work", args)
        argv = [*command[command.index("-m") + 2 :], "-q"]  # after "python -m bids_glm"
        env = dict(os.environ)
        if source is not None:
            env["PYTHONPATH"] = str(source)
        result = folder / "phases.json"
        child_command = [sys.executable, __file__, "--child", str(result), "--", *argv]
        subprocess.run(child_command, env=env, check=True, stdout=subprocess.DEVNULL)
        return json.loads(result.read_text())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        child(Path(args.child), args.bids_glm_args)
        return 0
    sys.path.insert(0, str(HERE))  # the sibling benchmarks
    from compare_nilearn import compile_bytecode
    from streaming import make_run

    bids_dir = make_run(args.workdir, args.volumes)
    variants: list[tuple[str, Path | None]] = [("this", None)]
    if args.compare:
        variants.insert(0, ("compared", args.compare.resolve()))
    for _, source in variants:
        compile_bytecode(None if source is None else source / "bids_glm")
    runs: dict[str, list[dict]] = {label: [] for label, _ in variants}
    for pair in range(args.pairs):
        order = variants if pair % 2 == 0 else variants[::-1]
        for label, source in order:
            runs[label].append(run_once(source, bids_dir, args))
        cells = "  ".join(
            f"{phase} " + "/".join(f"{runs[label][-1][phase]:.3f}" for label, _ in variants)
            for phase in PHASES
        )
        print(f"pair {pair + 1}: {cells}", flush=True)
    labels = [label for label, _ in variants]
    print(f"\nmedians over {args.pairs} runs (s; {' / '.join(labels)}):")
    for phase in PHASES:
        medians = [statistics.median(r[phase] for r in runs[label]) for label in labels]
        line = f"  {phase:12s}" + "".join(f"{m:9.3f}" for m in medians)
        if len(labels) == 2:
            pairs = zip(runs[labels[0]], runs[labels[1]], strict=True)
            difference = statistics.median(b[phase] - a[phase] for a, b in pairs)
            line += f"   this - compared, median of pairs: {difference:+.3f}"
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = Path(tempfile.gettempdir()) / "bids_glm_stream_bench"
    parser.add_argument("--workdir", type=Path, default=default_dir, help="datasets' folder")
    parser.add_argument("--volumes", type=int, default=200, help="volumes of the MNI run")
    parser.add_argument("--pairs", type=int, default=6, help="runs of each tree")
    parser.add_argument(
        "--compare", type=Path, help="root of another checkout to run alternately with this one"
    )
    parser.add_argument("--n-cpus", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("bids_glm_args", nargs="*", help=argparse.SUPPRESS)
    parser.set_defaults(smoothing=5.0, noise_model="ar1")
    return parser


if __name__ == "__main__":
    sys.exit(main())
