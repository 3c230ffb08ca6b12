"""The BABS configuration (hpc/babs/config_bids-glm.yaml) and the call BABS makes with it.

BABS (PennLINC's BIDS App BootStrap) turns the YAML's ``bids_app_args`` into the command of
its per-job run script (its template ``bidsapp_run.sh``)::

    singularity run ... IMAGE "${PWD}/<first input>" "${PWD}/outputs/<zip folder>" participant \\
        <key value, one per bids_app_args entry> --participant-label "${subid}"

with ``subid`` like ``sub-02``, ``$BABS_TMPDIR`` replaced by ``"${PWD}/.git/tmp/wkdir"``, an
empty value meaning a bare flag, and the job's dataset holding only that subject (the other
subjects' folders absent after the sparse checkout, or present as unretrieved git-annex
files). These tests rebuild that script from the YAML (``singularity run IMAGE`` replaced by
this Python's ``-m bids_glm``) and run it with bash, so a config that drifts from the CLI
fails here.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from bids_glm import __version__
from bids_glm.cli.parser import build_parser
from bids_glm.demo.dataset import make_demo_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_PATH = REPO_ROOT / "hpc" / "babs" / "config_bids-glm.yaml"
CONFIG = yaml.safe_load(CONFIG_PATH.read_text())
SUBJECT = "sub-02"
OTHERS = ("sub-01", "sub-03")
WORK_DIR = '"${PWD}/.git/tmp/wkdir"'  # what BABS writes for $BABS_TMPDIR
OUTPUT_MAIN_FOLDER = "outputs"  # BABS's folder of the folders it zips


# ---- what BABS derives from the YAML (its rules, restated) ----------------------------------


def input_datasets() -> list[dict]:
    """The input datasets in YAML order, with BABS's default unzipped path filled in."""
    datasets = []
    for name, fields in CONFIG["input_datasets"].items():
        unzipped = fields.get("unzipped_path_containing_subject_dirs")
        if unzipped is None:  # BABS: path_in_babs, plus /<name> for a zipped dataset
            unzipped = fields["path_in_babs"] + (f"/{name}" if fields["is_zipped"] else "")
        datasets.append({"name": name, **fields, "unzipped": unzipped})
    return datasets


def output_folder() -> str:
    assert CONFIG["all_results_in_one_zip"] is True
    (folder,) = CONFIG["zip_foldernames"]
    return f"{OUTPUT_MAIN_FOLDER}/{folder}"


def app_arguments() -> tuple[list[str], str]:
    """``bids_app_args`` as BABS renders them (shell text, one entry each) and the subject flag."""
    lines, subject_flag = [], "--participant-label"
    for key, value in CONFIG["bids_app_args"].items():
        if key == "$SUBJECT_SELECTION_FLAG":
            subject_flag = value
        elif value in ("", None, "Null", "NULL"):
            lines.append(str(key))
        elif str(value) == "$BABS_TMPDIR":
            lines.append(f"{key} {WORK_DIR}")
        else:
            lines.append(f"{key} {value}")
    return lines, subject_flag


def run_script(program: list[str]) -> str:
    """The bash run script of one job, ``program`` standing for ``singularity run IMAGE``."""
    lines, subject_flag = app_arguments()
    bids_dir = input_datasets()[0]["unzipped"]
    command = [
        " ".join(shlex.quote(p) for p in program),
        f'"${{PWD}}/{bids_dir}"',
        f'"${{PWD}}/{output_folder()}"',
        "participant",
        *lines,
        f'{subject_flag} "${{subid}}"',
    ]
    return "\n".join(
        [
            "set -e -u",
            'subid="$1"',
            'mkdir -p "${PWD}/.git/tmp/wkdir"',
            f'mkdir -p "{output_folder()}"',
            " \\\n    ".join(command),
            "",
        ]
    )


# ---- the YAML itself --------------------------------------------------------------------------


def test_config_sections():
    for section in ("input_datasets", "bids_app_args", "zip_foldernames", "cluster_resources"):
        assert section in CONFIG
    assert CONFIG["cluster_resources"]["interpreting_shell"]
    assert CONFIG["script_preamble"].strip()
    assert CONFIG["job_compute_space"]


def test_inputs_are_raw_bids_first_then_fmriprep():
    raw, fmriprep = input_datasets()
    assert raw["is_zipped"] is False  # the first one is BIDS_DIR: the events are there
    assert fmriprep["is_zipped"] is True
    assert fmriprep["name"] == "fmriprep"  # BABS finds sub-XX_fmriprep-*.zip by this name
    assert all(d["path_in_babs"].startswith("inputs/data/") for d in (raw, fmriprep))


def test_app_arguments_are_bids_glm_options():
    args = CONFIG["bids_app_args"]
    assert args["$SUBJECT_SELECTION_FLAG"] == "--participant-label"
    assert args["-w"] == "$BABS_TMPDIR"
    fmriprep = input_datasets()[1]
    assert shlex.split(args["--derivatives"].replace("${PWD}", "")) == [f"/{fmriprep['unzipped']}"]
    options = {o for a in build_parser()._actions for o in a.option_strings}
    assert {"--participant-label"} | {k for k in args if not k.startswith("$")} <= options
    assert args["--n-cpus"] == CONFIG["cluster_resources"]["number_of_cpus"]


def test_zip_folder_carries_the_version():
    assert CONFIG["zip_foldernames"] == {"bids-glm": __version__.replace(".", "-")}


def test_alert_messages_are_lines_bids_glm_writes():
    source = "\n".join(p.read_text() for p in (REPO_ROOT / "bids_glm").rglob("*.py"))
    ours = [m for m in CONFIG["alert_log_messages"]["stderr"] if "bids-glm" in m or ": " in m]
    assert len(ours) >= 3
    for message in ours:  # the others are Python's and the system's
        assert message in source, message


# ---- the job on a one-subject checkout --------------------------------------------------------


@pytest.fixture(scope="module")
def demo_bids(tmp_path_factory) -> Path:
    bids = tmp_path_factory.mktemp("babs-demo") / "bids"
    make_demo_dataset(bids, n_subjects=3, n_runs=1)
    return bids


def checkout(demo_bids: Path, job: Path, others: str) -> Path:
    """The job's dataset as BABS leaves it before the run: the raw BIDS subdataset and this
    subject's unzipped fMRIPrep results; ``others`` says how the other subjects look."""
    raw, fmriprep = input_datasets()
    bids = job / raw["unzipped"]
    shutil.copytree(demo_bids, bids, ignore=shutil.ignore_patterns("derivatives"))
    derivatives = job / fmriprep["unzipped"]
    shutil.copytree(demo_bids / "derivatives" / "fmriprep", derivatives)
    (bids / ".datalad").mkdir()
    (bids / ".datalad" / "config").write_text('[datalad "dataset"]\n\tid = 0000\n')
    (bids / ".git").write_text("gitdir: ../../../.git/modules/inputs/data/BIDS\n")
    zip_name = f"{SUBJECT}_fmriprep-24-1-1.zip"
    (derivatives.parent / zip_name).symlink_to(f"../../../.git/annex/objects/{zip_name}")
    for subject in OTHERS:
        shutil.rmtree(derivatives / subject)  # the zip holds this job's subject only
        folder = bids / subject
        files = [p for p in folder.rglob("*") if p.is_file()]
        if others == "absent":  # sparse checkout
            shutil.rmtree(folder)
            continue
        for path in files:
            path.unlink()
            if others == "empty":
                path.touch()
            else:  # annexed, not retrieved
                path.symlink_to(f"../../../.git/annex/objects/XX/YY/{path.name}/{path.name}")
    return job


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("others", ["absent", "empty", "broken_symlink"])
def test_babs_job_runs_one_subject(demo_bids, tmp_path, others):
    job = checkout(demo_bids, tmp_path / "ds", others)
    inputs_before = tree_digest(job / "inputs")
    script = job / "code" / "bids-glm_zip.sh"
    script.parent.mkdir()
    script.write_text(run_script([sys.executable, "-m", "bids_glm"]))
    result = subprocess.run(
        ["bash", str(script), SUBJECT],
        cwd=job,
        env={**os.environ, "PWD": str(job)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    summary = next(line for line in result.stderr.splitlines() if "participant level:" in line)
    assert "1 done" in summary and "0 failed" in summary
    for message in CONFIG["alert_log_messages"]["stderr"]:
        assert message not in result.stderr

    outputs = job / output_folder()
    assert (outputs / "dataset_description.json").is_file()
    assert (outputs / f"{SUBJECT}.html").is_file()
    maps = sorted(outputs.rglob("*_statmap.nii.gz"))
    assert maps
    assert {p.relative_to(outputs).parts[0] for p in maps} == {SUBJECT}
    assert all(p.name.startswith(f"{SUBJECT}_") for p in maps)
    assert not [p for p in outputs.rglob("*") if any(s in p.name for s in OTHERS)]
    assert sorted(p.name for p in (job / OUTPUT_MAIN_FOLDER).iterdir()) == ["bids-glm"]
    assert tree_digest(job / "inputs") == inputs_before  # inputs are read only

    # BABS then zips the folder: everything of this subject is inside it
    ((folder, version),) = CONFIG["zip_foldernames"].items()
    archive = job / f"{SUBJECT}_{folder}-{version}.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in outputs.rglob("*"):
            zipped.write(path, path.relative_to(job / OUTPUT_MAIN_FOLDER))
    with zipfile.ZipFile(archive) as zipped:
        assert all(name.startswith(f"{folder}/") for name in zipped.namelist())
