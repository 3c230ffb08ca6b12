"""The derivatives layer on its own: names built and parsed back, the map writer, the summary."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bids_glm.derivatives import naming
from bids_glm.derivatives.files import MapWriter
from bids_glm.derivatives.summary import RunExcluded, RunUsed, UnitSummary
from bids_glm.image.geometry import VolumeGeometry

# labels short enough that every name fits the file-name limit (longer ones: test_long_names)
LABEL = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=24
)


@given(
    sub=LABEL,
    ses=st.none() | LABEL,
    task=LABEL,
    run=st.none() | LABEL,
    space=st.none() | LABEL,
    contrast=LABEL,
    stat=st.sampled_from(["effect", "variance", "t", "z", "p", "F"]),
)
def test_map_names_parse_back_to_their_entities(sub, ses, task, run, space, contrast, stat):
    given_entities = {"sub": sub, "ses": ses, "task": task, "run": run, "space": space}
    entities = naming.run_level_entities({k: v for k, v in given_entities.items() if v})
    path = naming.stat_map_path(naming.subject_func_dir("/out", entities), entities, stat,
                                contrast=contrast)  # fmt: skip
    parsed = naming.parse_name(path)
    assert parsed.entities == {**entities, "contrast": contrast, "stat": stat}
    assert (parsed.suffix, parsed.extension) == ("statmap", ".nii.gz")
    assert path.parent.as_posix() == (
        f"/out/sub-{sub}/ses-{ses}/func" if ses else f"/out/sub-{sub}/func"
    )
    assert naming.sidecar_path(path).name == path.name.replace(".nii.gz", ".json")


def test_names_of_every_output_kind():
    entities = {"sub": "01", "ses": "a", "task": "faces", "space": "MNI"}
    folder = naming.subject_func_dir("/out", entities)
    prefix = "/out/sub-01/ses-a/func/sub-01_ses-a_task-faces_space-MNI"
    assert str(naming.mask_path(folder, entities)) == f"{prefix}_mask.nii.gz"
    assert str(naming.mean_image_path(folder, entities)) == f"{prefix}_desc-mean_boldref.nii.gz"
    assert str(naming.clusters_path(folder, entities, "face")) == (
        f"{prefix}_desc-face_clusters.tsv"
    )
    run = naming.run_level_entities({**entities, "run": "2", "acq": "mb", "desc": "preproc"})
    assert str(naming.design_path(folder, run)) == (
        "/out/sub-01/ses-a/func/sub-01_ses-a_task-faces_acq-mb_run-2_space-MNI_design.tsv"
    )
    assert str(naming.stat_map_path(folder, run, "beta", desc="face")) == (
        "/out/sub-01/ses-a/func/sub-01_ses-a_task-faces_acq-mb_run-2_space-MNI"
        "_desc-face_stat-beta_statmap.nii.gz"
    )
    group = naming.group_level_entities("faces", "MNI")
    assert str(naming.stat_map_path(naming.group_dir("/out"), group, "t", contrast="c")) == (
        "/out/group/task-faces_space-MNI_contrast-c_stat-t_statmap.nii.gz"
    )
    assert str(naming.manifest_path("/out", {**entities, "run": "2"})) == (
        "/out/logs/manifests/sub-01_ses-a_task-faces_space-MNI.json"
    )
    assert str(naming.report_path("/out", "01")) == "/out/sub-01.html"
    assert str(naming.report_path("/out")) == "/out/group.html"
    assert str(naming.report_path("/out", "01", extension=".pdf")) == "/out/sub-01.pdf"
    assert naming.run_label(naming.design_path(folder, run)) == "run-2"


def test_finders_tell_a_participants_maps_from_a_runs(tmp_path):
    subject = {"sub": "01", "task": "x", "space": "MNI"}
    run = {"sub": "01", "task": "x", "run": "1", "space": "MNI"}
    folder = naming.subject_func_dir(tmp_path, subject)
    folder.mkdir(parents=True)
    written = [
        naming.stat_map_path(folder, subject, "z", contrast="b"),
        naming.stat_map_path(folder, subject, "z", contrast="a"),
        naming.stat_map_path(folder, subject, "effect", contrast="a"),
        naming.stat_map_path(folder, run, "z", contrast="a"),
        naming.design_path(folder, run),
        naming.mask_path(folder, subject),
    ]
    for path in written:
        path.touch()
    assert naming.find_stat_maps(folder, subject, "z") == [("a", written[1]), ("b", written[0])]
    assert naming.find_stat_maps(folder, run, "z") == [("a", written[3])]
    assert naming.find_run_designs(folder, subject) == [written[4]]
    found = naming.find_subject_stat_maps(tmp_path, "effect")
    assert found == [({**subject, "contrast": "a", "stat": "effect"}, written[2])]
    other_space = {**subject, "space": "T1w"}
    assert naming.unit_files(tmp_path, other_space) == []
    assert sorted(naming.unit_files(tmp_path, subject)) == sorted(written)


def _geometry() -> VolumeGeometry:
    mask = np.zeros((4, 5, 3), dtype=bool)
    mask[1:3, 1:4, 1] = True
    return VolumeGeometry(mask, np.diag([2.0, 2.0, 2.0, 1.0]))


def test_geometry_round_trip_and_restriction():
    geometry = _geometry()
    values = np.arange(geometry.n_values, dtype=np.float32) + 1
    volume = geometry.to_volume(values)
    assert volume.shape == geometry.shape and volume[~geometry.mask].sum() == 0
    np.testing.assert_array_equal(geometry.from_volume(volume), values)
    keep = values % 2 == 0
    smaller = geometry.restricted(keep)
    assert smaller.n_values == keep.sum()
    np.testing.assert_array_equal(smaller.from_volume(volume), values[keep])


@pytest.mark.parametrize("fortran_mask", [False, True])
def test_a_volume_in_either_memory_order_holds_each_value_at_its_voxel(fortran_mask):
    mask = np.random.default_rng(3).random((6, 7, 5)) < 0.4
    geometry = VolumeGeometry(np.asfortranarray(mask) if fortran_mask else mask, np.eye(4))
    values = np.arange(1, geometry.n_values + 1, dtype=np.float32)
    expected = np.zeros(mask.shape, dtype=np.float32)
    expected[mask] = values  # C order of the grid
    for order in ("C", "F"):
        volume = geometry.to_volume(values, order=order)
        assert volume.flags[f"{order}_CONTIGUOUS"]
        np.testing.assert_array_equal(volume, expected)


@pytest.mark.parametrize("n_threads", [0, 2])
def test_map_writer_writes_the_same_bytes_with_or_without_threads(tmp_path, n_threads):
    geometry = _geometry()
    values = np.linspace(-3, 3, geometry.n_values)
    path = tmp_path / f"t{n_threads}" / "sub-01_task-x_stat-z_statmap.nii.gz"
    with MapWriter(n_threads) as writer:
        writer.write_map(path, values, geometry, {"Statistic": "z"})
        values[:] = 0  # the writer owns a copy
    image = nib.load(path)
    np.testing.assert_allclose(geometry.from_volume(image.get_fdata()), np.linspace(-3, 3, 6))
    np.testing.assert_array_equal(image.affine, geometry.affine)
    assert naming.sidecar_path(path).read_text() == '{\n  "Statistic": "z"\n}\n'
    reference = tmp_path / "reference.nii.gz"
    MapWriter().write_map(reference, np.linspace(-3, 3, 6), geometry, {})
    assert gzip.decompress(path.read_bytes()) == gzip.decompress(reference.read_bytes())


def test_map_writer_raises_a_failed_background_write_when_the_block_ends(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError), MapWriter(1) as writer:
        writer.submit(lambda: (blocker / "x").mkdir())


def test_summary_round_trips_through_the_manifest_form():
    summary = UnitSummary(
        participant="01",
        task="faces",
        space="MNI",
        n_runs=2,
        repetition_times_s=(2.0,),
        conditions=("face", "house"),
        confounds=("trans_x",),
        runs_used=(RunUsed("run-1", "sub-01/func/x_design.tsv", "/bids/e.tsv", None),),
        runs_excluded=(RunExcluded("run-2", "face", "column(s) face absent"),),
        warnings=("a warning",),
        settings={"HRFModel": "glover", "Confounds": ["motion6", "scrub:FD=0.4,DVARS=1.5"]},
        command_line="bids-glm in out participant",
        software={"bids-glm": "0"},
        mean_image="sub-01/func/mean.nii.gz",
        elapsed_s=1.5,
    )
    document = summary.to_json()
    assert document["Runs"] == 2 and document["RunsUsed"][0]["Design"].endswith("design.tsv")
    assert UnitSummary.from_json(document) == summary
    assert summary.fd_threshold_mm == pytest.approx(0.4)


def test_summary_of_an_older_manifest_says_what_was_not_recorded():
    summary = UnitSummary.from_json({"Participant": "02", "Task": "x", "Settings": {}})
    assert (summary.participant, summary.task, summary.n_runs) == ("02", "x", 0)
    assert summary.runs_used is None and summary.runs_excluded is None
    assert summary.warnings is None and summary.fd_threshold_mm is None
