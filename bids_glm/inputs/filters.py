"""``--bids-filter-file``: pybids filters that select the preprocessed runs.

The file uses fMRIPrep's format: a JSON object whose keys name a query and whose values
map BIDS entities (pybids' long names: ``session``, ``run``, ``acquisition``, ...) to a
value, a list of values, ``null`` (the entity must be absent) or ``"*"`` (any value).
bids-glm queries preprocessed BOLD series, so only the ``"bold"`` query applies; the
other queries fMRIPrep knows (``t1w``, ``fmap``, ...) are accepted and ignored, so one
filter file can serve both tools.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from bids_glm.errors import InputError

LOGGER = logging.getLogger("bids_glm")
APPLIED_QUERY = "bold"
FMRIPREP_QUERIES = frozenset({"bold", "sbref", "fmap", "t1w", "t2w", "flair", "roi", "dwi"})
# entities bids-glm sets itself to find preprocessed BOLD (derivatives' desc, suffix, ...)
RESERVED_ENTITIES = frozenset({"desc", "suffix", "extension", "datatype", "scope"})


def read_bids_filters(path: Path) -> dict[str, object]:
    """Read a filter file and return the ``"bold"`` query's entity filters.

    Parameters
    ----------
    path : Path
        JSON file in fMRIPrep's ``--bids-filter-file`` format.

    Returns
    -------
    dict of str to object
        Entity -> ``str``/``int``, list of them, ``None`` (entity absent) or ``"*"`` (any
        value). Empty when the file has no ``"bold"`` query.

    Raises
    ------
    InputError
        Unreadable file, invalid JSON (with its line), unknown query, an entity bids-glm
        sets itself, or a value that is not a string, integer, list, null or ``"*"``.
    """
    try:
        content = json.loads(Path(path).read_text())
    except OSError as err:
        raise InputError(f"--bids-filter-file {path}: cannot read it ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise InputError(
            f"--bids-filter-file {path}: not valid JSON (line {err.lineno}, column "
            f"{err.colno}: {err.msg})"
        ) from None
    if not isinstance(content, dict):
        raise InputError(
            f'--bids-filter-file {path}: expected a JSON object such as {{"bold": '
            f'{{"session": "01"}}}}, found a {type(content).__name__}'
        )
    unknown = sorted(set(content) - FMRIPREP_QUERIES)
    if unknown:
        raise InputError(
            f"--bids-filter-file {path}: unknown query {', '.join(map(repr, unknown))}; "
            f"expected {APPLIED_QUERY!r} (fMRIPrep's others are accepted and ignored)"
        )
    ignored = sorted(set(content) - {APPLIED_QUERY})
    if ignored:
        LOGGER.info("--bids-filter-file: query %s ignored (bids-glm reads BOLD only)", ignored)
    bold = content.get(APPLIED_QUERY, {})
    if not isinstance(bold, dict):
        raise InputError(
            f"--bids-filter-file {path}: {APPLIED_QUERY!r} must map entities to values, "
            f"found a {type(bold).__name__}"
        )
    for entity, value in bold.items():
        _check_filter(path, entity, value)
    return dict(bold)


def _check_filter(path: Path, entity: str, value: object) -> None:
    where = f"--bids-filter-file {path}: {APPLIED_QUERY}.{entity}"
    if entity in RESERVED_ENTITIES:
        hint = "; choose the variant with --desc" if entity == "desc" else ""
        raise InputError(
            f"{where}: bids-glm sets {entity!r} itself to find preprocessed BOLD{hint}; "
            "filter on entities such as session, run, acquisition or echo"
        )
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value:
        raise InputError(f"{where}: an empty list selects nothing")
    for item in values:
        if item is None and not isinstance(value, list):
            continue
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise InputError(
                f"{where}: expected a string, an integer, a list of them, null or '*', "
                f"found {json.dumps(item)}"
            )


def pybids_filters(filters: Mapping[str, object]) -> dict[str, object]:
    """The filters as ``BIDSLayout.get`` keywords (``null`` and ``"*"`` as pybids queries)."""
    from bids.layout import Query

    special = {None: Query.NONE, "*": Query.ANY}
    return {
        entity: special.get(value, value) if not isinstance(value, list) else value
        for entity, value in filters.items()
    }


def restrict_participants(
    participants: list[str], filters: Mapping[str, object], path: Path
) -> list[str]:
    """Participants kept by a ``subject`` filter (labels with or without ``sub-``)."""
    if "subject" not in filters:
        return participants
    wanted = filters["subject"]
    wanted = wanted if isinstance(wanted, list) else [wanted]
    if "*" in wanted:
        return participants
    labels = {str(w).removeprefix("sub-") for w in wanted if w is not None}
    kept = [p for p in participants if p in labels]
    if not kept:
        raise InputError(
            f"--bids-filter-file {path}: {APPLIED_QUERY}.subject keeps none of the "
            f"participants {', '.join(participants)}"
        )
    return kept
