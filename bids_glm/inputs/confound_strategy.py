"""What ``--confounds`` asks for, parsed and checked before any file is read.

The items (presets, ``non_steady_state``, one ``scrub:`` rule, column names and shell
wildcards) are described in :mod:`bids_glm.inputs.confounds`, which applies a strategy to a
confounds TSV. This module needs no pandas, so the command line is checked, and discovery
started, before pandas is loaded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bids_glm.inputs.confound_names import is_legacy_name

PRESETS = ("motion6", "motion24", "wm_csf", "global_signal", "acompcor", "cosine")
NON_STEADY_STATE = "non_steady_state"
SCRUB_FORM = "scrub:FD=<mm>,DVARS=<std> (e.g. scrub:FD=0.5,DVARS=1.5; either may be left out)"
# Strategy words of other tools (nilearn's load_confounds) that are not column names here.
_FOREIGN_STRATEGY_WORDS = {"motion", "high_pass", "compcor", "ica_aroma", "tedana", "wm", "gsr"}
_PRESET_LIKE_RE = re.compile(r"motion\d*")


def _squash(word: str) -> str:
    return re.sub(r"[^a-z0-9]", "", word.lower())


_SQUASHED_PRESETS = {_squash(p): p for p in (*PRESETS, NON_STEADY_STATE)}
_VALID_ITEMS = f"{', '.join(PRESETS)}, {NON_STEADY_STATE}, {SCRUB_FORM}"


class ConfoundError(ValueError):
    """A confound strategy that cannot be parsed or applied to a confounds file."""


@dataclass(frozen=True)
class ScrubRule:
    """Censoring thresholds: framewise displacement in mm, standardised DVARS."""

    fd_mm: float | None
    dvars: float | None

    def __post_init__(self) -> None:
        if self.fd_mm is None and self.dvars is None:
            raise ConfoundError(f"scrub needs at least one threshold; expected {SCRUB_FORM}")
        for name, value in (("FD", self.fd_mm), ("DVARS", self.dvars)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfoundError(
                    f"scrub {name}={value}: expected a positive number; form {SCRUB_FORM}"
                )

    @property
    def spec(self) -> str:
        """The rule written as a ``--confounds`` item, e.g. ``scrub:FD=0.5,DVARS=1.5``."""
        parts = [f"FD={self.fd_mm:g}"] if self.fd_mm is not None else []
        parts += [f"DVARS={self.dvars:g}"] if self.dvars is not None else []
        return "scrub:" + ",".join(parts)


@dataclass(frozen=True)
class ConfoundStrategy:
    """What ``--confounds`` asked for: presets, column patterns and censoring rules."""

    presets: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    scrub: ScrubRule | None = None
    non_steady_state: bool = False

    def __post_init__(self) -> None:
        unknown = [p for p in self.presets if p not in PRESETS]
        if unknown:
            raise ConfoundError(
                f"unknown confound preset(s) {', '.join(unknown)}; presets: {', '.join(PRESETS)}"
            )


def _parse_scrub(item: str) -> ScrubRule:
    """``scrub:FD=0.5,DVARS=1.5`` -> ScrubRule; ConfoundError showing the expected form."""
    _, _, body = item.partition(":")
    thresholds: dict[str, float] = {}
    for part in body.split(","):
        key, sep, value = (s.strip() for s in part.partition("="))
        key = key.upper()
        try:
            number = float(value) if sep else math.nan
        except ValueError:
            number = math.nan
        if key not in ("FD", "DVARS") or key in thresholds or not math.isfinite(number):
            raise ConfoundError(f"malformed {item!r} (at {part.strip()!r}); expected {SCRUB_FORM}")
        thresholds[key] = number
    return ScrubRule(fd_mm=thresholds.get("FD"), dvars=thresholds.get("DVARS"))


def _unknown_preset(item: str) -> str | None:
    """A reason why ``item`` reads as a mistyped preset rather than a column name, or None."""
    if ":" in item:
        return f"unknown option {item.partition(':')[0]!r}"
    if is_legacy_name(item):
        return None
    squashed = _squash(item)
    if squashed in _SQUASHED_PRESETS:
        return f"unknown preset (did you mean {_SQUASHED_PRESETS[squashed]!r}?)"
    if item.lower() in _FOREIGN_STRATEGY_WORDS or _PRESET_LIKE_RE.fullmatch(item.lower()):
        return "unknown preset"
    return None


def parse_confound_strategy(items: Sequence[str]) -> ConfoundStrategy:
    """Parse the ``--confounds`` items into a strategy.

    Parameters
    ----------
    items : sequence of str
        Presets, ``non_steady_state``, one ``scrub:FD=..,DVARS=..`` rule, column names and
        shell wildcards, in any order.

    Returns
    -------
    ConfoundStrategy
        Presets and patterns in the order given, duplicates dropped.

    Raises
    ------
    ConfoundError
        An empty item, a malformed or repeated scrub rule, or an item that looks like a
        preset but is none (``motion12``, ``Motion24``, ``compcor``, ``acompcor:5``); the
        message lists the valid items.
    """
    presets: list[str] = []
    patterns: list[str] = []
    scrub: ScrubRule | None = None
    non_steady_state = False
    for raw in items:
        item = raw.strip()
        if not item:
            raise ConfoundError(f"empty --confounds item; expected one of {_VALID_ITEMS}")
        if item.partition(":")[0].lower() == "scrub":
            if scrub is not None:
                raise ConfoundError(f"{item!r}: only one scrub rule may be given")
            scrub = _parse_scrub(item)
        elif item == NON_STEADY_STATE:
            non_steady_state = True
        elif item in PRESETS:
            presets += [item] if item not in presets else []
        elif (reason := _unknown_preset(item)) is not None:
            raise ConfoundError(
                f"--confounds {item!r}: {reason}; expected a preset ({_VALID_ITEMS}) "
                "or a column name / shell wildcard"
            )
        else:
            patterns += [item] if item not in patterns else []
    return ConfoundStrategy(tuple(presets), tuple(patterns), scrub, non_steady_state)
