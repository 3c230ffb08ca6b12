"""Output names that fit file systems: labels shortened the same way everywhere.

File names must fit the 255-byte limit of file systems, with room for the temporary name
an atomic write uses (``.<name>.XXXXXXXX.tmp``). Labels longer than
:data:`MAX_LABEL_BYTES` (real datasets have 74-character task names and trial types that
are sentences) are shortened to their first bytes and a hash of the whole label
(:func:`short_label`): the same inputs give the same names on every run, and a shortened
label is its own short form. :mod:`bids_glm.derivatives.naming` builds every name with these.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from bids_glm.errors import InputError

MAX_NAME_BYTES = 255
MAX_LABEL_BYTES = 64
_HASH_CHARACTERS = 8
_TEMPORARY_NAME_BYTES = len("..XXXXXXXX.tmp")  # tempfile.mkstemp(prefix=".<name>.", suffix=".tmp")


def short_label(label: str) -> str:
    """``label``, or when longer than :data:`MAX_LABEL_BYTES`, its head and a hash of it all.

    Deterministic, and a shortened label is returned unchanged (it is exactly
    :data:`MAX_LABEL_BYTES` long), so names parsed back from files build the same names.
    """
    encoded = label.encode()
    if len(encoded) <= MAX_LABEL_BYTES:
        return label
    digest = hashlib.sha256(encoded).hexdigest()[:_HASH_CHARACTERS]
    head = encoded[: MAX_LABEL_BYTES - _HASH_CHARACTERS].decode(errors="ignore")
    return f"{head}{digest}"


def original_labels(entities: Mapping[str, str]) -> dict[str, str]:
    """Entity -> full label, for the labels that names shorten (empty when none is)."""
    return {key: value for key, value in entities.items() if short_label(value) != value}


def checked_file(folder: Path, stem: str, extension: str) -> Path:
    """``folder/<stem><extension>``, checked against the file-name limit."""
    name = f"{stem}{extension}"
    if len(name.encode()) + _TEMPORARY_NAME_BYTES > MAX_NAME_BYTES:
        raise InputError(
            f"output name {name!r} is {len(name.encode())} bytes even with labels shortened "
            f"to {MAX_LABEL_BYTES}; file names (and their temporary names) must fit in "
            f"{MAX_NAME_BYTES} bytes: shorten the dataset's entity labels"
        )
    return Path(folder) / name
