"""The HRF model option (``--hrf-model``, ``Model.HRF``, Convolve) parsed once into a typed value.

``"spm + derivative + dispersion"`` becomes ``HrfSpec("spm", time_derivative=True,
dispersion_derivative=True)``; ``str()`` gives the canonical text back, as outputs record it.
This module needs no numpy: the command line parses the option before the numerical
libraries are loaded (:mod:`bids_glm.design.hrf` builds the kernels).
"""

from __future__ import annotations

from dataclasses import dataclass

HRF_MODELS: tuple[str, ...] = (
    "glover",
    "spm",
    "glover + derivative",
    "spm + derivative",
    "glover + derivative + dispersion",
    "spm + derivative + dispersion",
    "fir",
    "none",
)
_SEPARATOR = " + "


@dataclass(frozen=True)
class HrfSpec:
    """An HRF model: its base and the derivatives added to it.

    Attributes
    ----------
    base : str
        ``"glover"`` or ``"spm"`` (canonical double-gamma responses), ``"fir"`` (finite
        impulse response; the delays are a separate setting) or ``"none"`` (no convolution).
    time_derivative : bool
        Add the time derivative of the canonical response.
    dispersion_derivative : bool
        Add the dispersion derivative too (only with the time derivative).

    ``str(spec)`` is one of :data:`HRF_MODELS`; a combination that is none of them raises
    a ``ValueError`` when the spec is made.
    """

    base: str
    time_derivative: bool = False
    dispersion_derivative: bool = False

    def __post_init__(self) -> None:
        if str(self) not in HRF_MODELS:
            raise ValueError(
                f"Unknown hrf_model {str(self)!r}; expected one of: {', '.join(HRF_MODELS)}"
            )

    def __str__(self) -> str:
        parts = [self.base]
        parts += ["derivative"] * self.time_derivative
        parts += ["dispersion"] * self.dispersion_derivative
        return _SEPARATOR.join(parts)

    @property
    def canonical(self) -> bool:
        """Whether the base is a canonical double-gamma response (Glover or SPM)."""
        return self.base in ("glover", "spm")


GLOVER = HrfSpec("glover")


def hrf_model_text(model: str, time_derivative: bool, dispersion_derivative: bool) -> str:
    """The option text of a model name plus derivative flags (as BIDS Stats Models give them).

    ``("SPM", True, False)`` -> ``"spm + derivative"``; parse it with :func:`parse_hrf_model`.
    """
    words = [" ".join(str(model).lower().split())]
    words += ["derivative"] * time_derivative + ["dispersion"] * dispersion_derivative
    return _SEPARATOR.join(words)


def parse_hrf_model(text: str) -> HrfSpec:
    """Parse an HRF model name.

    Parameters
    ----------
    text : str
        One of :data:`HRF_MODELS`; case and runs of white space are ignored.

    Returns
    -------
    HrfSpec

    Raises
    ------
    ValueError
        When the text is none of :data:`HRF_MODELS`; the message lists them.
    """
    name = " ".join(str(text).lower().split())
    if name not in HRF_MODELS:
        raise ValueError(f"Unknown hrf_model {text!r}; expected one of: {', '.join(HRF_MODELS)}")
    base, *extras = name.split(_SEPARATOR)
    return HrfSpec(base, "derivative" in extras, "dispersion" in extras)
