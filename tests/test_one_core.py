"""``--n-cpus 1`` keeps a participant run to one core and changes none of its results.

A run with a core to spare forks discovery, the volume reduction and the templates'
compilation, and writes maps from threads; with ``--n-cpus 1`` (e.g. one job of many on a
node, or a one-core SLURM allocation) all of it runs in the calling thread. Here the run
with one core happens in an interpreter where starting a thread or forking a process
raises, and its outputs are compared byte for byte with those of a two-core run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bids_glm.demo.dataset import make_demo_dataset
from bids_glm.runtime.forked_call import can_fork

pytestmark = pytest.mark.skipif(not can_fork(), reason="forks and threads are used on Linux")

# files that name the command line or its timing: the same otherwise
RUN_RECORDS = ("CITATION", "manifests", "sub-01.html", "sub-01.pdf")
# run first in the one-core interpreter: any thread started or process forked fails the run
REFUSE_SECOND_CORE = textwrap.dedent(
    """
    import os, threading

    def refused(*args, **kwargs):
        raise AssertionError("a second core was used")

    os.fork = refused
    threading.Thread.start = refused
    """
)


def _participant(bids: Path, out: Path, n_cpus: int, one_core_only: bool) -> None:
    """Run the participant level in a fresh interpreter, every run streamed (not held)."""
    run = textwrap.dedent(
        f"""
        import sys
        from bids_glm.cli.main import main
        from bids_glm.pipeline import run_fit

        run_fit.HOLD_SERIES_MAX_BYTES = 0  # the stream's path, as whole-brain runs take
        sys.exit(main([{str(bids)!r}, {str(out)!r}, "participant", "-q",
                       "--n-cpus", "{n_cpus}", "--smoothing-fwhm", "5",
                       "--noise-model", "ar1", "--work-dir", {str(out) + "-work"!r}]))
        """
    )
    script = (REFUSE_SECOND_CORE if one_core_only else "") + run
    env = {key: value for key, value in os.environ.items() if key != "BIDS_GLM_THREADS"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr


def _outputs(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not any(part in str(path) for part in RUN_RECORDS)
    }


def test_one_core_runs_in_one_thread_with_the_same_outputs(tmp_path):
    bids = tmp_path / "bids"
    make_demo_dataset(bids, n_subjects=1, n_runs=2)
    _participant(bids, tmp_path / "one", n_cpus=1, one_core_only=True)
    _participant(bids, tmp_path / "two", n_cpus=2, one_core_only=False)
    one, two = _outputs(tmp_path / "one"), _outputs(tmp_path / "two")
    assert sum(name.endswith("_statmap.nii.gz") for name in one) > 20
    assert (tmp_path / "one" / "sub-01.pdf").is_file()  # reports too, in this thread
    assert one.keys() == two.keys()
    assert [name for name in one if one[name] != two[name]] == []
