"""Reading a BIDS Stats Model file: JSON (no repeated keys), then the checks of
:func:`bids_glm.inputs.smdl.schema.parse_model`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bids_glm.inputs.smdl.model import ModelError, StatsModel
from bids_glm.inputs.smdl.schema import parse_model


def load_model(path: Path | str) -> StatsModel:
    """Read, check and return the BIDS Stats Model in ``path``.

    Parameters
    ----------
    path : Path or str
        A BIDS Stats Model JSON file (UTF-8, a byte-order mark allowed).

    Returns
    -------
    StatsModel

    Raises
    ------
    ModelError
        Unreadable file, invalid JSON (with line and column), a malformed field (with its
        JSON path) or a feature bids-glm does not support (named).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ModelError(f"{path}: cannot read the model ({err})") from None
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys(path))
    except json.JSONDecodeError as err:
        raise ModelError(
            f"{path}: not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    return parse_model(document, str(path))


def _unique_keys(path: Path):
    def build(pairs: list[tuple[str, Any]]) -> dict:
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ModelError(f"{path}: key(s) {', '.join(repeated)} repeated in one JSON object")
        return dict(pairs)

    return build
