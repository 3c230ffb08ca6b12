"""Which columns of the events files the model reads (``--condition-column`` and friends).

Typed once from the command line or a BIDS Stats Model into `ModelSettings`; applied to
each ``events.tsv`` by :mod:`bids_glm.inputs.events`. Apart from that module so that the
settings are built without pandas.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CONDITION_COLUMN = "trial_type"


@dataclass(frozen=True)
class EventSpec:
    """Which events columns hold the conditions, amplitudes and parametric modulators.

    Attributes
    ----------
    condition_column : str, default="trial_type"
        Column whose values name the conditions (``--condition-column``).
    amplitude_column : str or None, default=None
        Numeric column scaling each event (``--amplitude-column``); ``None`` uses
        ``modulation`` when the file has it, else an amplitude of 1.
    parametric_modulators : tuple of str, default=()
        Numeric columns modelled as ``<condition>_x_<column>`` regressors, centred per
        condition and run (``--parametric-modulators``).
    """

    condition_column: str = DEFAULT_CONDITION_COLUMN
    amplitude_column: str | None = None
    parametric_modulators: tuple[str, ...] = ()


DEFAULT_EVENT_SPEC = EventSpec()  # the defaults of every option
