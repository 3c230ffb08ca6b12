"""A map written to several names is compressed once; its copies are hard links if possible."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np

from bids_glm.derivatives import files
from bids_glm.derivatives.files import MapWriter
from bids_glm.image.geometry import VolumeGeometry

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _write(tmp_path, n_threads: int):
    mask = np.zeros((6, 5, 4), bool)
    mask[1:5, 1:4, 1:3] = True
    geometry = VolumeGeometry(mask=mask, affine=AFFINE)
    values = np.arange(mask.sum(), dtype=np.float32) - 3.5
    run = tmp_path / "run" / "sub-01_run-1_stat-t_statmap.nii.gz"
    subject = tmp_path / "subject" / "sub-01_stat-t_statmap.nii.gz"
    with MapWriter(n_threads=n_threads) as writer:
        writer.write_map(run, values, geometry, {"Level": "run"}, {subject: {"Level": "subject"}})
    return mask, values, run, subject


def test_a_copy_is_a_hard_link_with_its_own_sidecar(tmp_path):
    mask, values, run, subject = _write(tmp_path, n_threads=1)
    assert os.path.samefile(run, subject)
    np.testing.assert_array_equal(np.asanyarray(nib.load(subject).dataobj)[mask], values)
    assert '"subject"' in subject.with_name("sub-01_stat-t_statmap.json").read_text()
    assert '"run"' in run.with_name("sub-01_run-1_stat-t_statmap.json").read_text()
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_copy_is_written_where_links_fail(tmp_path, monkeypatch):
    def no_links(source, destination):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(files.os, "link", no_links)
    _, _, run, subject = _write(tmp_path, n_threads=0)
    assert not os.path.samefile(run, subject)
    assert run.read_bytes() == subject.read_bytes()
    assert not list(tmp_path.rglob("*.tmp"))
