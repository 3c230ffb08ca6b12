"""The participant report of ``--preset spm12``: SPM's design and quantities, runs as sessions."""

from __future__ import annotations

import logging
import re

from spm12_reference import ROOT, needs_reference

from bids_glm.cli.main import main

pytestmark = needs_reference


def test_report_shows_the_spm_design_and_quantities(tmp_path, caplog):
    out = tmp_path / "out"
    argv = [str(ROOT / "bids"), str(out), "participant", "--preset", "spm12", "--no-pdf"]
    argv += ["--contrast", "faceMinusHouse=face - house", "--skip-bids-validator"]
    argv += ["--report-run-maps"]  # an SPM12 model has no run maps to show or compare
    with caplog.at_level(logging.WARNING, logger="bids_glm"):
        assert main([*argv, "--work-dir", str(tmp_path / "work")]) == 0
    assert not [r for r in caplog.records if "report" in r.getMessage()]  # every figure drawn
    html = (out / "sub-pilot01.html").read_text()
    facts = dict(re.findall(r"<tr><th>([^<]+)</th><td>([^<]*)</td></tr>", html))
    assert facts["Sessions"] == "3" and facts["Scans per session"] == "150, 162, 141"
    assert facts["Effective degrees of freedom"] == "426.00"
    assert facts["ReML pool"] == "1150 voxels" and facts["Serial correlations"] == "AR(1)"
    assert len(facts["ReML hyperparameters"].split(", ")) == 6
    for alt in ("SPM12 design matrix", "SPM12 design correlations", "SPM12 contrasts"):
        assert re.search(rf'<img src="data:image/[^"]+" alt="{alt}">', html), alt
    fitted = re.findall(r"<tr><th>Volumes fitted</th><td>(\d+)</td></tr>", html)
    assert fitted == ["150", "162", "141"]  # each run shown as its session's block
    assert re.search(r'alt="session 3: [^"]*run-3 design matrix"', html)
    assert "faceMinusHouse (SPM12 multi-session model)" in html
    assert "(fixed effects)" not in html
    assert 'id="runs-vs-fixed"' not in html and "faceMinusHouse (session" not in html
