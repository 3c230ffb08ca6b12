"""The corpus of defective inputs: each breaks a fresh tiny dataset in one way.

A `Defect` names the damage (a function of the dataset root and pytest's monkeypatch),
the command-line arguments (``{bids}``, ``{out}`` and ``{tmp}`` are filled in), the
expected exit code and the words the message on stderr must contain. `test_defects.py`
runs each one.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

SPACE = "MNI152NLin2009cAsym"
STEM = "sub-01_task-tiny_run-1"
EVENTS = f"{STEM}_events.tsv"
BOLD = f"{STEM}_space-{SPACE}_desc-preproc_bold.nii.gz"
BOLD_JSON = f"{STEM}_space-{SPACE}_desc-preproc_bold.json"
MASK = f"{STEM}_space-{SPACE}_desc-brain_mask.nii.gz"
CONFOUNDS = f"{STEM}_desc-confounds_timeseries.tsv"
BASE_ARGS = ("{bids}", "{out}", "participant", "--no-reports")


@dataclass(frozen=True)
class Defect:
    """One defective input and what bids-glm must answer.

    Attributes
    ----------
    name : str
        The test id.
    damage : callable
        ``damage(root, monkeypatch)`` breaks the dataset at ``root`` (or the environment).
    args : tuple of str
        Arguments after the base ones (``BASE_ARGS``), or all of them if ``replace_args``.
    code : int
        The expected exit code.
    words : tuple of str
        Text stderr must contain (``{bids}``, ``{out}``, ``{tmp}`` filled in).
    replace_args : bool
        Whether ``args`` replaces the base arguments instead of extending them.
    """

    name: str
    damage: Callable[[Path, object], None]
    args: tuple[str, ...] = ()
    code: int = 3
    words: tuple[str, ...] = ()
    replace_args: bool = False


def raw_func(root: Path) -> Path:
    return root / "sub-01" / "func"


def deriv_func(root: Path) -> Path:
    return root / "derivatives" / "fmriprep" / "sub-01" / "func"


def _events(text: str) -> Callable[[Path, object], None]:
    def damage(root: Path, _mp) -> None:
        (raw_func(root) / EVENTS).write_bytes(text.encode() if isinstance(text, str) else text)

    return damage


def _deriv_file(name: str, payload: bytes) -> Callable[[Path, object], None]:
    def damage(root: Path, _mp) -> None:
        (deriv_func(root) / name).write_bytes(payload)

    return damage


def _file(relative: str, payload: bytes) -> Callable[[Path, object], None]:
    def damage(root: Path, _mp) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)

    return damage


def _nothing(_root: Path, _mp) -> None:
    return None


def _edit_json(name: str, **fields) -> Callable[[Path, object], None]:
    def damage(root: Path, _mp) -> None:
        path = deriv_func(root) / name
        document = json.loads(path.read_text())
        document.update(fields)
        path.write_text(json.dumps(document))

    return damage


def _truncate(name: str, keep: float) -> Callable[[Path, object], None]:
    def damage(root: Path, _mp) -> None:
        path = deriv_func(root) / name
        payload = path.read_bytes()
        path.write_bytes(payload[: int(len(payload) * keep)])

    return damage


def _corrupt_middle(name: str) -> Callable[[Path, object], None]:
    def damage(root: Path, _mp) -> None:
        path = deriv_func(root) / name
        payload = bytearray(path.read_bytes())
        start = len(payload) // 2
        payload[start : start + 64] = bytes(64)
        path.write_bytes(bytes(payload))

    return damage


def _image(name: str, data: np.ndarray, affine=None) -> Callable[[Path, object], None]:
    def damage(root: Path, _mp) -> None:
        image = nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]) if affine is None else affine)
        image.header.set_xyzt_units("mm", "sec")
        image.to_filename(deriv_func(root) / name)

    return damage


def _bold_3d(root: Path, mp) -> None:
    _image(BOLD, np.ones((6, 7, 5), dtype=np.float32))(root, mp)


def _bold_all_nan(root: Path, _mp) -> None:
    path = deriv_func(root) / BOLD
    image = nib.load(path)
    data = np.full(image.shape, np.nan, dtype=np.float32)
    nib.Nifti1Image(data, image.affine, image.header).to_filename(path)


def _mask_other_grid(root: Path, mp) -> None:
    _image(MASK, np.ones((4, 4, 4), dtype=np.uint8))(root, mp)


def _mask_4d(root: Path, mp) -> None:
    _image(MASK, np.ones((6, 7, 5, 2), dtype=np.uint8))(root, mp)


def _mask_zeros(root: Path, mp) -> None:
    _image(MASK, np.zeros((6, 7, 5), dtype=np.uint8))(root, mp)


def _remove(relative: str) -> Callable[[Path, object], None]:
    def damage(root: Path, _mp) -> None:
        path = root / relative
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        else:
            path.unlink()

    return damage


def _confounds(text: str) -> Callable[[Path, object], None]:
    return _deriv_file(CONFOUNDS, text.encode())


def _short_confounds(root: Path, _mp) -> None:
    path = deriv_func(root) / CONFOUNDS
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:10]))


def _text_in_confounds(root: Path, _mp) -> None:
    path = deriv_func(root) / CONFOUNDS
    lines = path.read_text().splitlines(keepends=True)
    lines[5] = "moved\t0.1\n"
    path.write_text("".join(lines))


def _output_parent_is_file(root: Path, _mp) -> None:
    (root.parent / "afile").write_text("not a folder\n")


def _output_is_file(root: Path, _mp) -> None:
    (root.parent / "out").write_text("not a folder\n")


def _output_parent_read_only(root: Path, mp) -> None:
    """Tests run as root, which may write anywhere: deny writing through os.access."""
    (root.parent / "locked").mkdir()
    real_access = os.access
    locked = str(root.parent / "locked")

    def access(path, mode, *args, **kwargs):
        if str(path) == locked and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    mp.setattr(os, "access", access)


def _disk_full(_root: Path, mp) -> None:
    """The fifth file written (a statmap or its sidecar) meets a full disk."""
    from bids_glm.derivatives import files

    real_write = files._write_payload
    calls = {"n": 0}

    def write(stream, payload):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(stream, payload)

    mp.setattr(files, "_write_payload", write)


def _events_unreadable(root: Path, mp) -> None:
    """Tests run as root, which reads anything: deny reading the events file."""
    target = raw_func(root) / EVENTS
    real_read_text = Path.read_text

    def read_text(self, *args, **kwargs):
        if self == target:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_read_text(self, *args, **kwargs)

    mp.setattr(Path, "read_text", read_text)


def _filter_file(payload: str) -> Callable[[Path, object], None]:
    return _file("../filter.json", payload.encode())


def _model_file(payload: str) -> Callable[[Path, object], None]:
    return _file("../model.json", payload.encode())


GOOD_EVENTS = "onset\tduration\ttrial_type\n2\t4\ta\n20\t4\tb\n34\t4\ta\n44\t2\tb\n"

DEFECTS = [
    # --- events
    Defect(
        "events_trial_type_all_na",
        _events("onset\tduration\ttrial_type\n2\t4\tn/a\n20\t4\tn/a\n"),
        words=(EVENTS, "no condition"),
    ),
    Defect("events_empty_file", _events(""), words=(EVENTS, "no condition")),
    Defect(
        "events_all_na_with_report",
        _events("onset\tduration\ttrial_type\n2\t4\tn/a\n"),
        args=("{bids}", "{out}", "participant", "--no-pdf"),
        replace_args=True,
        words=(EVENTS, "no condition"),
    ),
    Defect("events_header_only", _events("onset\tduration\ttrial_type\n"), words=(EVENTS,)),
    Defect("events_missing", _remove(f"sub-01/func/{EVENTS}"), words=("no events.tsv",)),
    Defect(
        "events_no_onset_column",
        _events("start\tduration\ttrial_type\n2\t4\ta\n"),
        words=(EVENTS, "onset"),
    ),
    Defect(
        "events_text_onset",
        _events("onset\tduration\ttrial_type\nsoon\t4\ta\n20\t4\tb\n"),
        words=(EVENTS, "onset", "soon"),
    ),
    Defect(
        "events_infinite_onset",
        _events("onset\tduration\ttrial_type\ninf\t4\ta\n20\t4\tb\n"),
        words=(EVENTS, "onset"),
    ),
    Defect(
        "events_text_duration",
        _events("onset\tduration\ttrial_type\n2\tlong\ta\n20\t4\tb\n"),
        words=(EVENTS, "duration", "long"),
    ),
    Defect("events_not_utf8", _events(b"\xff\xfe\x00o\x00n\xc3\x28"), words=(EVENTS, "TSV")),
    Defect(
        "events_extra_values",
        _events("onset\tduration\ttrial_type\n2\t4\ta\tx\ty\n"),
        words=(EVENTS, "line 2"),
    ),
    Defect(
        "events_repeated_column",
        _events("onset\tduration\tonset\n2\t4\t3\n"),
        words=(EVENTS, "twice"),
    ),
    Defect("events_unreadable", _events_unreadable, words=(EVENTS, "Permission denied")),
    Defect(
        "condition_column_absent",
        _nothing,
        args=("--condition-column", "stimulus"),
        words=("stimulus", EVENTS),
    ),
    Defect(
        "amplitude_column_text",
        _events("onset\tduration\ttrial_type\tgain\n2\t4\ta\thigh\n20\t4\tb\t1\n"),
        args=("--amplitude-column", "gain"),
        words=(EVENTS, "gain", "high"),
    ),
    # --- sidecars
    Defect(
        "bold_sidecar_invalid_json",
        _deriv_file(BOLD_JSON, b'{"RepetitionTime": 2,'),
        words=(BOLD_JSON, "JSON"),
    ),
    Defect("bold_sidecar_empty", _deriv_file(BOLD_JSON, b""), words=(BOLD_JSON, "JSON")),
    Defect(
        "bold_sidecar_not_an_object",
        _deriv_file(BOLD_JSON, b"[2.0]"),
        words=(BOLD_JSON, "object"),
    ),
    Defect(
        "raw_sidecar_invalid_json",
        _file("task-tiny_bold.json", b"{RepetitionTime: 2}"),
        words=("task-tiny_bold.json", "JSON"),
    ),
    Defect(
        "unneeded_confounds_sidecar_empty",
        _deriv_file(f"{STEM}_desc-confounds_timeseries.json", b""),
        code=0,
        words=(f"{STEM}_desc-confounds_timeseries.json", "skipped while indexing"),
    ),
    Defect(
        "unneeded_anat_sidecar_invalid",
        _file("derivatives/fmriprep/sub-01/anat/sub-01_desc-brain_mask.json", b"{\n  oops\n"),
        code=0,
        words=("sub-01_desc-brain_mask.json", "skipped while indexing"),
    ),
    Defect(
        "unneeded_sidecar_with_report",
        _deriv_file(f"{STEM}_desc-confounds_timeseries.json", b"{"),
        args=("{bids}", "{out}", "participant", "--no-pdf"),
        replace_args=True,
        code=0,
        words=(f"{STEM}_desc-confounds_timeseries.json", "skipped while indexing"),
    ),
    Defect(
        "needed_confounds_sidecar_invalid",
        _deriv_file(f"{STEM}_desc-confounds_timeseries.json", b"{"),
        args=("--confounds", "trans_x"),
        words=(f"{STEM}_desc-confounds_timeseries.json", "JSON"),
    ),
    Defect(
        "derivatives_description_invalid",
        _file("derivatives/fmriprep/dataset_description.json", b"{"),
        words=("fmriprep/dataset_description.json", "JSON"),
    ),
    Defect(
        "raw_description_invalid",
        _file("dataset_description.json", b""),
        words=("dataset_description.json", "JSON"),
    ),
    Defect(
        "repetition_time_negative",
        _edit_json(BOLD_JSON, RepetitionTime=-2.0),
        words=(BOLD, "RepetitionTime"),
    ),
    Defect(
        "repetition_time_text",
        _edit_json(BOLD_JSON, RepetitionTime="two seconds"),
        words=(BOLD, "RepetitionTime", "two seconds", "derivative sidecar"),
    ),
    Defect(
        "start_time_after_tr",
        _edit_json(BOLD_JSON, StartTime=5.0),
        words=(BOLD, "StartTime"),
    ),
    # --- images
    Defect("bold_truncated_gzip", _truncate(BOLD, 0.6), words=(BOLD,)),
    Defect("bold_header_only", _truncate(BOLD, 0.05), words=(BOLD,)),
    Defect("bold_corrupted_gzip", _corrupt_middle(BOLD), words=(BOLD,)),
    Defect("bold_empty_file", _deriv_file(BOLD, b""), words=(BOLD, "NIfTI")),
    Defect("bold_garbage", _deriv_file(BOLD, os.urandom(4096)), words=(BOLD,)),
    Defect("bold_three_d", _bold_3d, words=(BOLD, "4-D")),
    Defect("bold_all_nan", _bold_all_nan, words=(BOLD, "no in-mask voxel")),
    # --- masks
    Defect("mask_truncated", _truncate(MASK, 0.5), words=(MASK,)),
    Defect("mask_garbage", _deriv_file(MASK, b"\x00" * 100), words=(MASK,)),
    Defect("mask_all_zero", _mask_zeros, words=(MASK, "empty")),
    Defect("mask_four_d", _mask_4d, words=(MASK, "3-D")),
    Defect("mask_other_grid", _mask_other_grid, code=0, words=(MASK, "resampled")),
    Defect(
        "user_mask_missing",
        _nothing,
        args=("--mask", "{tmp}/nomask.nii.gz"),
        words=("--mask", "nomask.nii.gz"),
    ),
    Defect(
        "user_mask_garbage",
        _file("../garbage_mask.nii.gz", b"not an image"),
        args=("--mask", "{tmp}/garbage_mask.nii.gz"),
        words=("garbage_mask.nii.gz",),
    ),
    # --- confounds
    Defect(
        "confounds_not_utf8",
        _deriv_file(CONFOUNDS, b"\xff\xfe\x00\xc3\x28"),
        args=("--confounds", "trans_x"),
        words=(CONFOUNDS,),
    ),
    Defect(
        "confounds_empty_file",
        _confounds(""),
        args=("--confounds", "trans_x"),
        words=(CONFOUNDS,),
    ),
    Defect(
        "confounds_too_few_rows",
        _short_confounds,
        args=("--confounds", "trans_x"),
        words=(CONFOUNDS,),
    ),
    Defect(
        "confounds_column_absent",
        _nothing,
        args=("--confounds", "rot_z"),
        words=(CONFOUNDS, "rot_z"),
    ),
    Defect(
        "confounds_text_value",
        _text_in_confounds,
        args=("--confounds", "trans_x"),
        words=(CONFOUNDS, "trans_x"),
    ),
    Defect(
        "confounds_missing",
        _remove(f"derivatives/fmriprep/sub-01/func/{CONFOUNDS}"),
        args=("--confounds", "trans_x"),
        words=("confounds",),
    ),
    # --- names and contrasts
    Defect(
        "participant_label_path",
        _nothing,
        args=("--participant-label", "../01"),
        words=("--participant-label", "letters and digits"),
    ),
    Defect(
        "participant_absent",
        _nothing,
        args=("--participant-label", "99"),
        words=("sub-99", "not found"),
    ),
    Defect("task_absent", _nothing, args=("--task", "rest"), words=("rest", "tiny")),
    Defect("space_absent", _nothing, args=("--space", "fsaverage"), words=("fsaverage", SPACE)),
    Defect(
        "contrast_unknown_column",
        _nothing,
        args=("--contrast", "x=a-c"),
        words=("x=a-c", "c"),
    ),
    Defect("contrast_syntax", _nothing, args=("--contrast", "x=a+"), words=("contrast",)),
    Defect(
        "contrast_redefines_condition",
        _nothing,
        args=("--contrast", "a=a-b"),
        words=("contrast a", "condition"),
    ),
    Defect("contrast_same_as_condition", _nothing, args=("--contrast", "a=a"), code=0),
    Defect(
        "contrast_name_twice",
        _nothing,
        args=("--contrast", "x=a", "--contrast", "x=b"),
        words=("x",),
    ),
    # --- paths and permissions
    Defect(
        "bids_dir_missing",
        _nothing,
        args=("{tmp}/nowhere", "{out}", "participant"),
        replace_args=True,
        words=("nowhere", "not a directory"),
    ),
    Defect(
        "output_inside_input",
        _nothing,
        args=("{bids}", "{bids}/out", "participant"),
        replace_args=True,
        words=("inside BIDS_DIR",),
    ),
    Defect(
        "output_parent_is_a_file",
        _output_parent_is_file,
        args=("{bids}", "{tmp}/afile/out", "participant"),
        replace_args=True,
        words=("{tmp}/afile", "not a directory"),
    ),
    Defect(
        "output_is_a_file",
        _output_is_file,
        words=("{out}", "not a directory"),
    ),
    Defect(
        "output_parent_not_writable",
        _output_parent_read_only,
        args=("{bids}", "{tmp}/locked/out", "participant"),
        replace_args=True,
        words=("{tmp}/locked", "not writable"),
    ),
    Defect("disk_full", _disk_full, code=1, words=("{out}", "No space left on device")),
    Defect(
        "derivatives_missing",
        _nothing,
        args=("--derivatives", "{tmp}/nofmriprep"),
        words=("--derivatives", "nofmriprep"),
    ),
    Defect(
        "no_derivatives",
        _remove("derivatives"),
        words=("derivatives",),
    ),
    Defect(
        "no_participants",
        _remove("sub-01"),
        words=("sub-",),
    ),
    Defect(
        "filter_file_invalid",
        _filter_file('{"bold": {"run": '),
        args=("--bids-filter-file", "{tmp}/filter.json"),
        words=("filter.json",),
    ),
    Defect(
        "model_file_invalid",
        _model_file("{"),
        args=("--model", "{tmp}/model.json"),
        words=("model.json",),
    ),
    Defect(
        "model_file_missing",
        _nothing,
        args=("--model", "{tmp}/nomodel.json"),
        words=("nomodel.json",),
    ),
    # --- options
    Defect(
        "smoothing_negative", _nothing, args=("--smoothing-fwhm", "-1"), words=("--smoothing",)
    ),
    Defect("high_pass_zero", _nothing, args=("--high-pass", "0"), words=("--high-pass",)),
    Defect(
        "dummy_scans_all", _nothing, args=("--dummy-scans", "30"), words=("--dummy-scans", BOLD)
    ),
    Defect("n_cpus_zero", _nothing, args=("--n-cpus", "0"), words=("--n-cpus",)),
    Defect("alpha_above_one", _nothing, args=("--alpha", "2"), words=("--alpha",)),
    Defect(
        "slice_time_ref_above_one",
        _nothing,
        args=("--slice-time-ref", "2"),
        words=("--slice-time-ref",),
    ),
    Defect("unknown_option", _nothing, args=("--frobnicate",), code=2, words=("frobnicate",)),
    Defect(
        "hrf_model_unknown", _nothing, args=("--hrf-model", "boxcar"), code=2, words=("boxcar",)
    ),
]
