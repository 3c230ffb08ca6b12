"""The end of a participant-level run: one line saying what was done, skipped or failed.

Batch runs over many participants keep going when one fails; the summary names every
failure with its reason, and the exit status is non-zero when any unit failed.
"""

from __future__ import annotations

from dataclasses import dataclass

from bids_glm.errors import AnalysisError

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass(frozen=True)
class UnitResult:
    """What happened to one analysis unit.

    Attributes
    ----------
    name : str
        The unit, e.g. ``sub-01_task-faces_space-MNI152NLin2009cAsym``.
    status : str
        ``"done"``, ``"skipped"`` (complete outputs with the same settings) or ``"failed"``.
    reason : str
        Why it was skipped or failed (empty when done).
    error : BaseException or None
        The exception of a failure, re-raised when every unit failed.
    """

    name: str
    status: str
    reason: str = ""
    error: BaseException | None = None


def summary_line(results: list[UnitResult]) -> str:
    """``participant level: 2 done, 1 skipped, 1 failed (sub-03_task-x: reason)``."""
    counts = {s: sum(r.status == s for r in results) for s in (DONE, SKIPPED, FAILED)}
    line = "participant level: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    failures = [f"{r.name}: {r.reason}" for r in results if r.status == FAILED]
    if failures:
        line += " (" + "; ".join(failures) + ")"
    return line


def raise_for_failures(results: list[UnitResult]) -> None:
    """Raise when any unit failed.

    When every unit failed, the first failure is re-raised so that a single-participant
    run keeps that error's exit status (3 for unusable input, 1 for an internal error,
    whose traceback ``-v`` shows); otherwise an
    ``AnalysisError`` (exit status 1) lists the failed units.
    """
    failed = [r for r in results if r.status == FAILED]
    if not failed:
        return
    if len(failed) == len(results) and failed[0].error is not None:
        raise failed[0].error
    names = ", ".join(r.name for r in failed)
    raise AnalysisError(f"{len(failed)} of {len(results)} analysis unit(s) failed: {names}")
