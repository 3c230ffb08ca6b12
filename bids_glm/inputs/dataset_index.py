"""The participants of a BIDS dataset and its pybids index (raw data and derivatives).

Only the requested participants are indexed, in memory: nothing is written, so the input
dataset can be mounted read-only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from bids_glm.errors import InputError
from bids_glm.inputs.sidecars import ignore_patterns
from bids_glm.settings import Settings


def available_participants(bids_dir: Path) -> list[str]:
    """Participant labels that have a ``sub-<label>`` folder in the dataset."""
    return sorted(p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir())


def select_participants(bids_dir: Path, requested: Sequence[str]) -> list[str]:
    """Return the participants to analyse, or raise ``InputError`` for unknown labels."""
    present = available_participants(bids_dir)
    if not present:
        raise InputError(f"{bids_dir}: no sub-<label> folders; is this a BIDS dataset?")
    missing = [label for label in requested if label not in present]
    if missing:
        raise InputError(
            f"participant(s) {', '.join('sub-' + m for m in missing)} not found in {bids_dir}; "
            f"present: {', '.join('sub-' + p for p in present)}"
        )
    return list(requested) or present


def indexer_ignore(participants: Sequence[str]) -> list[re.Pattern]:
    keep = "|".join(re.escape(p) for p in participants)
    return [
        re.compile(r"^/(code|stimuli|sourcedata|models|derivatives|logs)(/|$)"),
        re.compile(r"/\."),
        re.compile(rf"^/sub-(?!({keep})(/|$))[^/]+"),
    ]


def open_layout(settings: Settings, participants: Sequence[str], unreadable=()):
    """Index the raw dataset and the derivatives for ``participants`` only.

    ``unreadable`` JSON files (`bids_glm.inputs.sidecars.read_json_files`) are left out.
    No metadata is indexed: discovery merges the sidecars it read itself.

    Returns
    -------
    bids.BIDSLayout
        Layout with the derivatives attached. Its index is held in memory: nothing is
        written, so the inputs may be read-only (an on-disk index costs twice the time and
        would be rebuilt on every run anyway).
    """
    from bids import BIDSLayout, BIDSLayoutIndexer
    from bids.exceptions import BIDSValidationError

    ignore = [*indexer_ignore(participants), *ignore_patterns(unreadable)]
    indexer = BIDSLayoutIndexer(validate=False, ignore=ignore, index_metadata=False)
    try:
        return BIDSLayout(
            settings.bids_dir,
            validate=False,
            derivatives=[str(d) for d in settings.derivatives] or False,
            indexer=indexer,
        )
    except (BIDSValidationError, ValueError, OSError) as err:  # OSError: a JSON file changed
        cause = f" ({err.__cause__})" if err.__cause__ else ""
        raise InputError(f"cannot index {settings.bids_dir} with pybids: {err}{cause}") from None
