"""bids-glm called from a daemonic process (a ``multiprocessing.Pool`` worker, as workflow
engines do): such a process may not start children, so runs and report PDFs are processed
in it, and the outputs are those of an ordinary run."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from bids_glm.cli.main import main as bids_glm_main
from bids_glm.demo.dataset import make_demo_dataset


def _participant_level(bids_dir: str, output_dir: str) -> tuple[bool, int]:
    argv = [bids_dir, output_dir, "participant", "--n-cpus", "4", "-q"]
    return multiprocessing.current_process().daemon, bids_glm_main(argv)


def test_a_pool_worker_runs_the_participant_level_with_its_reports(tmp_path):
    bids_dir, output_dir = tmp_path / "bids", tmp_path / "output"
    make_demo_dataset(bids_dir, n_subjects=1, n_runs=2)
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # workers are daemonic
        daemonic, code = pool.apply(_participant_level, (str(bids_dir), str(output_dir)))
    assert daemonic and code == 0
    func = Path(output_dir) / "sub-01" / "func"
    assert len(list(func.glob("*_run-*_stat-z_statmap.nii.gz"))) >= 2 * 3  # 2 runs' maps
    assert (output_dir / "sub-01.html").is_file()
    assert (output_dir / "sub-01.pdf").read_bytes().startswith(b"%PDF")
