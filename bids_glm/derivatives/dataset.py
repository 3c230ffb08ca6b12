"""The output dataset's own files (description, README, .bidsignore) and BIDS URIs of inputs."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from bids_glm import __version__
from bids_glm.derivatives.files import write_bytes_atomic, write_json
from bids_glm.derivatives.naming import BIDS_IGNORED, OUTPUT_README

BIDS_VERSION = "1.10.0"
CODE_URL = "https://github.com/bids-glm/bids-glm"
CONTAINER_ENV = "BIDS_GLM_CONTAINER"


def dataset_links(bids_dir: Path, derivative_dirs: Sequence[Path]) -> dict[str, Path]:
    """Names for the input datasets, used in BIDS URIs (``bids:<name>:<path>``).

    The raw dataset is ``raw``; each derivatives folder is named after its folder
    (letters and digits only, made unique).
    """
    links = {"raw": bids_dir}
    for folder in derivative_dirs:
        base = re.sub(r"[^A-Za-z0-9]", "", folder.name) or "derivatives"
        key, suffix = base, 1
        while key in links or key == "bids":
            suffix += 1
            key = f"{base}{suffix}"
        links[key] = folder
    return links


def bids_uri(path: Path, links: Mapping[str, Path]) -> str:
    """``bids:<dataset>:<relative path>`` for an input file (the innermost dataset wins)."""
    for key, root in sorted(links.items(), key=lambda item: -len(item[1].parts)):
        if root in path.parents:
            return f"bids:{key}:{path.relative_to(root).as_posix()}"
    return path.as_uri()


def _container_type() -> str:
    """``singularity`` under Apptainer/Singularity (which run the Docker image), else docker."""
    apptainer = ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")
    return "singularity" if any(os.environ.get(v) for v in apptainer) else "docker"


def dataset_description(bids_dir: Path, links: Mapping[str, Path]) -> dict:
    """The ``dataset_description.json`` content of the output folder."""
    generated_by = {"Name": "bids-glm", "Version": __version__, "CodeURL": CODE_URL}
    container = os.environ.get(CONTAINER_ENV)
    if container:
        generated_by["Container"] = {"Type": _container_type(), "Tag": container}
    source = {"URL": bids_dir.as_uri()}
    try:
        raw = json.loads((bids_dir / "dataset_description.json").read_text())
    except (OSError, json.JSONDecodeError):
        raw = {}
    if raw.get("DatasetDOI"):
        source = {"DOI": raw["DatasetDOI"]}
    return {
        "Name": f"bids-glm first-level statistics of {raw.get('Name', bids_dir.name)}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
        "SourceDatasets": [source],
        "DatasetLinks": {key: root.as_uri() for key, root in links.items()},
    }


def write_dataset_description(output_dir: Path, bids_dir: Path, links: Mapping[str, Path]) -> None:
    """Write ``dataset_description.json``, ``README.md`` and ``.bidsignore``.

    Concurrent participant processes write identical bytes, and each write is an atomic
    rename, so the folder always holds one complete, consistent copy.
    """
    write_json(output_dir / "dataset_description.json", dataset_description(bids_dir, links))
    write_bytes_atomic(output_dir / "README.md", OUTPUT_README.encode())
    write_bytes_atomic(output_dir / ".bidsignore", "\n".join(BIDS_IGNORED).encode() + b"\n")
