"""The datasets' JSON files, read once before indexing: metadata, and the unreadable ones.

pybids stops the whole index on the first JSON file it cannot decode (an empty ``.json``
in the derivatives happens in real datasets). Before indexing, `read_json_files` reads
every JSON file the index would see, once: the objects are where the runs' sidecar metadata
comes from (pybids indexes no metadata: for 160 runs that took it 1.7 of its 2.2 s), and
those that are not a JSON object are left out of the index (`ignore_patterns`). After
discovery, `unusable_runs` names the runs whose BOLD sidecar (raw or derivative, by the
inheritance principle) is one of them: those runs fail (their analysis unit only); the
other files only get a warning, since the analysis does not need them.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bids_glm.errors import InputError
from bids_glm.inputs.entities import applicable_files, raw_entities, split_name

LOGGER = logging.getLogger("bids_glm")
DESCRIPTION = "dataset_description.json"


@dataclass(frozen=True)
class UnreadableJson:
    """A JSON file that is not a readable JSON object.

    Attributes
    ----------
    path : Path
        The file.
    root : Path
        The dataset (raw or derivatives) it belongs to.
    reason : str
        What is wrong, e.g. ``empty file`` or the decoder's message with its line.
    """

    path: Path
    root: Path
    reason: str

    @property
    def relative(self) -> str:
        """The path from the dataset root, as pybids matches its ignore patterns."""
        return "/" + self.path.relative_to(self.root).as_posix()


def read_json_object(path: Path) -> tuple[dict | None, str | None]:
    """``path``'s JSON object and None, or None and why it is not a readable JSON object."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})"
    except UnicodeDecodeError as err:
        return None, f"not UTF-8 text ({err.reason} at byte {err.start}); expected a JSON object"
    if not text.strip():
        return None, "empty file; expected a JSON object"
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        return None, (
            f"invalid JSON ({err.msg} at line {err.lineno} column {err.colno}); "
            "expected a JSON object"
        )
    if not isinstance(document, dict):
        return None, f"a JSON {type(document).__name__}; expected a JSON object"
    return document, None


@dataclass(frozen=True)
class JsonFiles:
    """Every JSON file the index would see, read once: the objects and the unreadable files.

    Attributes
    ----------
    documents : dict of Path to dict
        The readable ones' objects (sidecar metadata is merged from them, not by pybids).
    unreadable : list of UnreadableJson
        The others, left out of the index.
    """

    documents: dict[Path, dict]
    unreadable: list[UnreadableJson]


def _json_files(root: Path, ignore: Sequence[re.Pattern]) -> Iterable[Path]:
    """JSON files under ``root`` that pybids would index (its ignore patterns applied)."""
    for folder, subfolders, files in os.walk(root):
        inside = Path(folder).relative_to(root).as_posix()
        relative = "" if inside == "." else f"/{inside}"
        subfolders[:] = sorted(
            name for name in subfolders if not any(p.search(f"{relative}/{name}") for p in ignore)
        )
        for name in sorted(files):
            if name.endswith(".json") and not any(p.search(f"{relative}/{name}") for p in ignore):
                yield Path(folder) / name


def read_json_files(roots: Sequence[Path], ignore: Sequence[re.Pattern]) -> JsonFiles:
    """Read every JSON file under ``roots`` that pybids would index.

    Raises
    ------
    InputError
        A ``dataset_description.json`` at a root is unreadable: the dataset cannot be
        indexed without it.
    """
    documents, unreadable = {}, []
    for root in roots:
        for path in _json_files(root, ignore):
            document, problem = read_json_object(path)
            if document is not None:
                documents[path] = document
                continue
            if path == root / DESCRIPTION:
                raise InputError(
                    f"{path}: {problem}. Every BIDS dataset (raw or derivatives) needs a "
                    "readable dataset_description.json (Name, BIDSVersion)"
                )
            unreadable.append(UnreadableJson(path, root, problem))
    return JsonFiles(documents, unreadable)


def ignore_patterns(files: Iterable[UnreadableJson]) -> list[re.Pattern]:
    """pybids ignore patterns leaving ``files`` out of the index.

    pybids matches them against paths relative to each dataset root, so a file of the
    same relative path in another root is left out too (it loses only its metadata).
    """
    return [re.compile(rf"^{re.escape(f.relative)}$") for f in files]


def unusable_runs(
    bolds: Sequence[Path], unreadable: Sequence[UnreadableJson], bids_dir: Path
) -> dict[Path, str]:
    """Runs whose BOLD sidecar is unreadable, and why; warn about the other unreadable files.

    Parameters
    ----------
    bolds : sequence of Path
        The preprocessed BOLD series of the runs to analyse.
    unreadable : sequence of UnreadableJson
        What `read_json_files` found unreadable.
    bids_dir : Path
        The raw dataset.

    Returns
    -------
    dict of Path to str
        Each run that cannot be analysed (its BOLD path) and the reason, naming the first
        of its unreadable sidecars and why the run needs it.
    """
    bold_sidecars = [f for f in unreadable if split_name(f.path)[1] == "bold"]
    refused, needed = {}, set()
    for bold in map(Path, bolds):
        for found in bold_sidecars:
            if _applies(found, bold, bids_dir):
                needed.add(found.path)
                refused.setdefault(
                    bold,
                    f"{found.path}: {found.reason}. It is a sidecar of {bold.name} "
                    "(RepetitionTime, StartTime): the run cannot be analysed without it",
                )
    for found in unreadable:
        if found.path not in needed:
            LOGGER.warning(
                "%s: %s; skipped while indexing (no BOLD sidecar of the analysed runs)",
                found.path,
                found.reason,
            )
    return refused


def _applies(found: UnreadableJson, bold: Path, bids_dir: Path) -> bool:
    """Whether the unreadable file is a sidecar of the run's raw or preprocessed BOLD."""
    entities = split_name(bold)[0]
    if found.root == bids_dir:
        raw = raw_entities(entities)
        run_dir = bids_dir / f"sub-{raw['sub']}"
        if "ses" in raw:
            run_dir = run_dir / f"ses-{raw['ses']}"
        return bool(applicable_files([found.path], raw, bids_dir, run_dir / "func"))
    if found.root not in bold.parents:
        return False
    return bool(applicable_files([found.path], entities, found.root, bold.parent))
