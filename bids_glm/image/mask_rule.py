"""How masks are combined (``--mask-combine``, ``MaskCombine``), parsed once into a typed rule.

The threshold convention is nilearn's ``intersect_masks``: ``fraction:F`` keeps a voxel when
*more than* ``F`` of the masks contain it (``F = 1`` meaning all of them), so ``union`` is the
limit ``F -> 0`` and ``intersection`` is ``F = 1``. This module needs no numpy: the command
line parses rules before the numerical libraries are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

MASK_RULE_FORMS = "'intersection', 'union' or 'fraction:F' with 0 < F <= 1 (e.g. 'fraction:0.5')"


@dataclass(frozen=True)
class MaskRule:
    """A mask combination rule.

    Attributes
    ----------
    kind : str
        ``"intersection"``, ``"union"`` or ``"fraction"``.
    fraction : float
        A voxel is kept when it is in more than this fraction of the masks, or in all of
        them when it is 1: 1 for ``intersection``, 0 for ``union``, ``F`` for ``fraction:F``.

    ``str(rule)`` is the rule's canonical text, as outputs record it: ``intersection``,
    ``union`` or ``fraction:<F as a Python float>``.
    """

    kind: str
    fraction: float

    def __post_init__(self) -> None:
        expected = {"intersection": 1.0, "union": 0.0}.get(self.kind)
        valid = (
            0.0 < self.fraction <= 1.0 if self.kind == "fraction" else self.fraction == expected
        )
        if not valid:
            raise ValueError(f"mask combination rule: expected {MASK_RULE_FORMS}, got {self!r}")

    def __str__(self) -> str:
        return f"fraction:{self.fraction!r}" if self.kind == "fraction" else self.kind


INTERSECTION = MaskRule("intersection", 1.0)
UNION = MaskRule("union", 0.0)


def parse_mask_rule(text: str) -> MaskRule:
    """Parse a ``--mask-combine`` value.

    Parameters
    ----------
    text : str
        ``"intersection"``, ``"union"`` or ``"fraction:F"`` with ``0 < F <= 1``
        (case and surrounding spaces ignored).

    Returns
    -------
    MaskRule

    Raises
    ------
    ValueError
        When the text is none of the accepted forms; the message lists them.
    """
    rule = text.strip().lower() if isinstance(text, str) else None
    if rule == INTERSECTION.kind:
        return INTERSECTION
    if rule == UNION.kind:
        return UNION
    kind, separator, value = (rule or "").partition(":")
    if kind == "fraction" and separator:
        try:
            fraction = float(value)
        except ValueError:
            fraction = float("nan")
        if 0.0 < fraction <= 1.0:
            return MaskRule("fraction", fraction)
    raise ValueError(f"mask combination rule: expected {MASK_RULE_FORMS}, got {text!r}")
