"""Which analysis units are already done: a small manifest per participant, task and space.

A unit's manifest is written last, after every one of its outputs, and removed before
the unit is (re)done. So a manifest exists only for complete outputs made with the
recorded settings and inputs; a run killed at any point leaves none, and the next run
redoes the unit (atomic writes mean no output file is ever half-written).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bids_glm import __version__
from bids_glm.derivatives.files import write_json
from bids_glm.derivatives.naming import manifests_dir
from bids_glm.derivatives.summary import UnitSummary

LOGGER = logging.getLogger("bids_glm")


def fingerprint(description: str, inputs: Sequence[Path]) -> str:
    """Hash of the settings (their text) and the inputs (path, size, modification time)."""
    digest = hashlib.sha256(f"bids-glm {__version__}\n{description}\n".encode())
    for path in sorted(inputs):
        status = path.stat()
        digest.update(f"{path}\t{status.st_size}\t{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_complete(path: Path, expected_fingerprint: str) -> bool:
    """Whether the manifest matches and every output it lists exists with its size."""
    manifest = _read(path)
    if manifest is None or manifest.get("Fingerprint") != expected_fingerprint:
        return False
    root = path.parents[2]
    for name, size in manifest.get("Outputs", {}).items():
        output = root / name
        if not output.is_file() or output.stat().st_size != size:
            return False
    return True


def invalidate(path: Path) -> None:
    """Before (re)doing a unit: remove its manifest and the outputs it listed."""
    manifest = _read(path)
    path.unlink(missing_ok=True)
    if manifest is None:
        return
    root = path.parents[2]
    for name in manifest.get("Outputs", {}):
        (root / name).unlink(missing_ok=True)


def record(
    path: Path, expected_fingerprint: str, outputs: Sequence[Path], summary: UnitSummary
) -> None:
    """After a unit: its outputs (relative to OUTPUT_DIR, with sizes) and a summary.

    The summary (participant, task, space, runs, repetition times, conditions) lets the
    methods text describe every completed unit, including those of other processes.
    """
    root = path.parents[2]
    listed = {o.relative_to(root).as_posix(): o.stat().st_size for o in sorted(outputs)}
    write_json(
        path,
        {"Fingerprint": expected_fingerprint, "Outputs": listed, "Summary": summary.to_json()},
    )


def completed_summaries(output_dir: Path) -> list[UnitSummary]:
    """Summaries of every complete unit in OUTPUT_DIR, in file-name order."""
    manifests = sorted(manifests_dir(output_dir).glob("*.json"))
    documents = [m for m in map(_read, manifests) if m and isinstance(m.get("Summary"), dict)]
    return [UnitSummary.from_json(m["Summary"]) for m in documents]


@contextmanager
def summaries_lock(output_dir: Path) -> Iterator[None]:
    """Hold OUTPUT_DIR's lock while reading every summary and writing what derives from them.

    Processes sharing an OUTPUT_DIR (job arrays) each record their manifest, then rewrite the
    methods text from all completed summaries. Under this lock the last process to write is
    also the last to read, so it has seen every manifest recorded before it. Where the file
    system refuses locks, the block runs unlocked.
    """
    folder = manifests_dir(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder, os.O_RDONLY)  # the folder itself: no lock file to leave
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError as err:  # e.g. some network file systems
            LOGGER.debug("%s: no lock (%s); writing unlocked", folder, err)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
