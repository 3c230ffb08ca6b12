"""Design matrices against SPM's own (``spm_dmtx.npz`` shipped in the nipy wheel)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bids_glm.design.hrf_spec import HrfSpec
from bids_glm.design.matrix import frame_times, make_design_matrix

ONSETS_S = [30, 50, 70, 10, 30, 80, 30, 40, 60]
CONDITIONS = ["c0"] * 3 + ["c1"] * 3 + ["c2"] * 3


def _spm_designs() -> dict[str, np.ndarray]:
    spec = importlib.util.find_spec("nipy")
    if spec is None:
        pytest.skip("nipy (test extra) is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "modalities/fmri/tests"
    return dict(np.load(folder / "spm_dmtx.npz"))


def _relative_sse(design: pd.DataFrame, reference: np.ndarray) -> float:
    ours = design[["c0", "c1", "c2", "constant"]].to_numpy()
    return float(((reference - ours) ** 2).sum() / (reference**2).sum())


@pytest.mark.parametrize(("key", "duration_s"), [("arr_0", 0.0), ("arr_1", 10.0)])
@pytest.mark.parametrize("hrf_model", ["spm", "glover"])
def test_relative_sse_to_spm_is_not_above_nilearns(key, duration_s, hrf_model):
    from nilearn.glm.first_level import make_first_level_design_matrix

    reference = _spm_designs()[key]  # 100 frames of 1 s: c0, c1, c2, constant
    events = pd.DataFrame({"onset": ONSETS_S, "duration": duration_s, "trial_type": CONDITIONS})
    times = frame_times(100, 1.0)
    ours = make_design_matrix(times, events, hrf_model=HrfSpec(hrf_model), drift_model=None)
    theirs = make_first_level_design_matrix(times, events, hrf_model=hrf_model, drift_model=None)
    ours_sse, nilearn_sse = _relative_sse(ours, reference), _relative_sse(theirs, reference)
    assert ours_sse <= nilearn_sse + 1e-12
    if hrf_model == "spm":  # same HRF as SPM: close (nipy's own bound is 0.1)
        assert ours_sse < 0.05
