"""A light check of the input dataset, run unless ``--skip-bids-validator`` is given.

It refuses a folder that is not a BIDS dataset (no usable ``dataset_description.json``)
and warns about file names under the analysed participants that the BIDS validator's
naming rules reject, since pybids silently ignores such files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from bids_glm.errors import InputError

LOGGER = logging.getLogger("bids_glm")
REQUIRED_DESCRIPTION_FIELDS = ("Name", "BIDSVersion")
MAX_LISTED = 5


def check_dataset_description(bids_dir: Path) -> dict:
    """Read ``dataset_description.json``; raise ``InputError`` if missing or incomplete."""
    path = bids_dir / "dataset_description.json"
    hint = "(or skip this check with --skip-bids-validator)"
    try:
        description = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: missing; BIDS_DIR must be a BIDS dataset {hint}") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err}) {hint}") from None
    if not isinstance(description, dict):
        raise InputError(f"{path}: expected a JSON object {hint}")
    missing = [k for k in REQUIRED_DESCRIPTION_FIELDS if k not in description]
    if missing:
        raise InputError(f"{path}: required field(s) {', '.join(missing)} missing {hint}")
    return description


def invalid_names(bids_dir: Path, participants: Sequence[str]) -> list[str]:
    """Files under the participants' folders whose names break BIDS naming rules."""
    from bids_validator import BIDSValidator

    validator = BIDSValidator()
    invalid = []
    for label in participants:
        for path in sorted((bids_dir / f"sub-{label}").rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                relative = "/" + path.relative_to(bids_dir).as_posix()
                if not validator.is_bids(relative):
                    invalid.append(relative)
    return invalid


def validate_dataset(bids_dir: Path, participants: Sequence[str]) -> None:
    """Refuse a non-BIDS folder; warn about non-BIDS file names (ignored by discovery)."""
    check_dataset_description(bids_dir)
    invalid = invalid_names(bids_dir, participants)
    if invalid:
        shown = ", ".join(invalid[:MAX_LISTED]) + (" ..." if len(invalid) > MAX_LISTED else "")
        LOGGER.warning(
            "%d file(s) do not follow BIDS naming and are ignored: %s", len(invalid), shown
        )
