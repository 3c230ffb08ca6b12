"""The FIAC-shaped demo (``bids-glm-demo OUTDIR --design fiac``) and the report's
run-wise vs fixed-effects comparison.

The demo's own analysis needs ``--design-dir`` and numeric contrasts (issue 16, items
1-2); these tests fit the same data with the options every build has: bids-glm's design
built from the events (which the pre-computed designs must equal) and the example's
contrasts as expressions over the condition names.
"""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_glm.cli import demo as demo_cli
from bids_glm.cli.main import main as bids_glm_main
from bids_glm.demo import fiac, fiac_contrasts
from bids_glm.design.contrasts import bids_label
from bids_glm.report import svg
from bids_glm.report.brain_figures import glass_brain_svg
from bids_glm.report.comparison import shared_vmax

FUNC = Path("sub-01", "func")


@pytest.fixture(scope="module")
def fiac_demo(tmp_path_factory):
    """The FIAC demo (seed 0) fitted with expression contrasts, run maps in the report."""
    root = tmp_path_factory.mktemp("fiac")
    truth = fiac.make_fiac_dataset(root / "bids", root / "designs", seed=0)
    output = root / "output"
    argv = [str(root / "bids"), str(output), "participant", "--work-dir", str(root / "work")]
    argv += [*fiac_contrasts.expression_arguments(), "--report-run-maps", "--no-pdf"]
    assert bids_glm_main(argv) == 0
    return {"root": root, "truth": truth, "output": output}


def _files(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _z_map(output: Path, label: str, run: str | None = None) -> np.ndarray:
    run_part = f"_run-{run}" if run else ""
    pattern = f"sub-01_task-fiac{run_part}_space-*_contrast-{label}_stat-z_statmap.nii.gz"
    (path,) = (output / FUNC).glob(pattern)
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


def test_same_seed_same_bytes_other_seed_other_data(fiac_demo, tmp_path):
    fiac.make_fiac_dataset(tmp_path / "bids", tmp_path / "designs", seed=0)
    assert _files(tmp_path / "bids") == _files(fiac_demo["root"] / "bids")
    assert _files(tmp_path / "designs") == _files(fiac_demo["root"] / "designs")
    other = fiac.make_fiac_dataset(tmp_path / "other" / "bids", tmp_path / "other" / "d", seed=1)
    assert other["seed"] == 1
    name = "sub-01_task-fiac_run-1_events.tsv"
    assert (tmp_path / "other" / "bids" / FUNC / name).read_bytes() != (
        tmp_path / "bids" / FUNC / name
    ).read_bytes()


def test_reused_when_complete_refused_when_foreign(fiac_demo, tmp_path):
    bids = fiac_demo["root"] / "bids"
    before = _files(bids)
    assert fiac.make_fiac_dataset(bids, tmp_path / "designs", seed=0) == fiac_demo["truth"]
    assert _files(bids) == before
    assert _files(tmp_path / "designs") == _files(fiac_demo["root"] / "designs")
    with pytest.raises(FileExistsError, match="no FIAC demo of seed 3"):
        fiac.make_fiac_dataset(bids, tmp_path / "designs", seed=3)


def test_shapes_tr_conditions(fiac_demo):
    truth, bids = fiac_demo["truth"], fiac_demo["root"] / "bids"
    assert truth["runs"] == ["1", "2"] and truth["subjects"] == ["01"]
    assert truth["conditions"] == ["SSt", "SSp", "DSt", "DSp"]
    deriv = bids / "derivatives" / "fmriprep" / FUNC
    for run in truth["runs"]:
        image = nib.load(
            deriv / f"sub-01_task-fiac_run-{run}_space-{fiac.SPACE}_desc-preproc_bold.nii.gz"
        )
        assert image.shape == (64, 64, 30, 191)
        assert image.header.get_zooms() == pytest.approx((3.0, 3.0, 3.0, 2.5))
        events = pd.read_csv(bids / FUNC / f"sub-01_task-fiac_run-{run}_events.tsv", sep="\t")
        assert sorted(events["trial_type"].unique()) == sorted(fiac_contrasts.CONDITIONS)
        assert events["onset"].min() > 0
        assert (events["onset"] + events["duration"]).max() <= 191 * 2.5 - fiac.END_REST_S
    block = pd.read_csv(bids / FUNC / "sub-01_task-fiac_run-1_events.tsv", sep="\t")
    # run 1 is a block design: runs of six sentences of one condition
    blocks = block["trial_type"].to_numpy().reshape(-1, fiac.BLOCK_SENTENCES)
    assert len(blocks) == len(fiac_contrasts.CONDITIONS) * fiac.BLOCKS_PER_CONDITION
    assert all(len(set(sentences)) == 1 for sentences in blocks)
    assert np.diff(block["onset"].to_numpy().reshape(blocks.shape), axis=1).max() < 3.4
    for name in ("sentence", "speaker", "deactivation"):
        assert fiac.region_mask(truth, name).sum() == truth["regions"][name]["n_voxels"] > 50


def test_designs_one_row_per_volume_equal_bids_glm_own(fiac_demo):
    designs, output = fiac_demo["root"] / "designs", fiac_demo["output"]
    names = sorted(p.name for p in designs.iterdir())
    assert names == [
        f"sub-01_task-fiac_run-{r}_space-MNI152NLin2009cAsym_design.tsv" for r in ("1", "2")
    ]
    assert names == sorted(fiac_demo["truth"]["designs"].values())
    for name in names:
        given = pd.read_csv(designs / name, sep="\t")
        assert len(given) == 191
        assert list(given.columns[:4]) == ["SSt", "SSp", "DSt", "DSp"]
        assert given.columns[-1] == "constant" and given.columns[4] == "drift_1"
        assert np.isfinite(given.to_numpy()).all()
        # the design bids-glm builds from the events (conditions sorted by name)
        built = pd.read_csv(output / FUNC / name, sep="\t")
        assert sorted(built.columns) == sorted(given.columns)
        np.testing.assert_allclose(built[given.columns].to_numpy(), given.to_numpy(), atol=1e-10)


def test_planted_effects_found_and_fixed_effects_stronger(fiac_demo):
    truth, output = fiac_demo["truth"], fiac_demo["output"]
    sentence = fiac.region_mask(truth, "sentence")
    speaker = fiac.region_mask(truth, "speaker")
    deactivation = fiac.region_mask(truth, "deactivation")
    cases = [("dStMinusSSt", sentence, speaker), ("dSpMinusSSp", speaker, sentence)]
    cases += [("deactivation", deactivation, sentence | speaker)]
    for label, planted, unaffected in cases[:2]:
        fixed = _z_map(output, label)
        assert np.median(fixed[planted]) > 5.0, label
        assert abs(np.median(fixed[unaffected])) < 1.5, label
        runs = [np.median(_z_map(output, label, r)[planted]) for r in ("1", "2")]
        assert min(runs) > 3.0 and np.median(fixed[planted]) > max(runs), label
    z = _z_map(output, "deactivation")
    assert np.median(z[deactivation]) > 5.0 and np.median(z[sentence | speaker]) < -5.0
    weights = fiac_demo["truth"]["t_contrasts"]["DSt_minus_SSt"]
    assert weights == [-1, -1, 1, 1]
    (sidecar,) = (output / FUNC).glob("sub-01_task-fiac_space-*_contrast-dStMinusSSt_*z*.json")
    recorded = pd.read_json(sidecar, typ="series")["ContrastWeights"]
    assert recorded == dict(zip(fiac_contrasts.CONDITIONS, map(float, weights), strict=True))


def _comparison_rows(html: str) -> list[tuple[str, float, list[str]]]:
    start = html.index('<section id="runs-vs-fixed">')
    section = html[start : html.index("</section>", start)]
    rows = []
    for block in section.split('<div class="comparison"')[1:]:
        anchor = re.search(r'id="([^"]+)"', block).group(1)
        vmax = float(re.search(r'data-vmax="([^"]+)"', block).group(1))
        svgs = [
            base64.b64decode(uri).decode()
            for uri in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', block)
        ]
        rows.append((anchor, vmax, svgs))
    return rows


def test_report_compares_runs_and_fixed_effects_on_one_scale(fiac_demo):
    output = fiac_demo["output"]
    html = (output / "sub-01.html").read_text()
    assert 'href="#runs-vs-fixed"' in html
    rows = _comparison_rows(html)
    assert len(rows) == len(fiac_contrasts.T_CONTRASTS) + len(fiac_contrasts.F_CONTRASTS) + len(
        fiac_contrasts.CONDITIONS
    )
    mask_path = next((output / FUNC).glob("*_mask.nii.gz"))
    in_mask = np.asarray(nib.load(mask_path).dataobj) > 0
    for anchor, vmax, svgs in rows:
        label = re.search(r"contrast-([A-Za-z0-9]+)", anchor).group(1)
        maps = [_z_map(output, label, "1"), _z_map(output, label, "2"), _z_map(output, label)]
        assert len(svgs) == 3, anchor
        assert vmax == pytest.approx(max(float(np.abs(m[in_mask]).max()) for m in maps))
        assert vmax == pytest.approx(shared_vmax(maps, in_mask))
        tick = svg.tick_label(round(vmax, 2))
        assert all(f">{tick}<" in text for text in svgs), (anchor, tick)
        titles = [re.search(r"<title>([^<]*)</title>", text) for text in svgs]
        assert [t.group(1).rsplit(", ", 1)[1] for t in titles if t] in (
            ["run-1", "run-2", "fixed effects"],
            [],
        )


def test_no_comparison_without_run_maps(fiac_demo, tmp_path):
    from bids_glm.report.render import ReportOptions, render_participant_reports

    output = tmp_path / "output"
    shutil.copytree(fiac_demo["output"], output)
    (html,) = render_participant_reports(output, "01", ReportOptions(write_pdf=False))
    assert "runs-vs-fixed" not in html.read_text()


def test_glass_brain_vmax_sets_the_colour_scale():
    stat = np.zeros((8, 8, 8), dtype=np.float32)
    stat[4, 4, 4] = 4.0
    own = glass_brain_svg(stat, np.eye(4), 3.0)
    shared = glass_brain_svg(stat, np.eye(4), 3.0, vmax=7.5)
    assert ">4<" in own and ">7.5<" in shared and ">7.5<" not in own
    with pytest.raises(ValueError, match="vmax"):
        glass_brain_svg(stat, np.eye(4), 3.0, vmax=float("nan"))
    assert shared_vmax([stat, -2 * stat], None) == 8.0
    assert shared_vmax([np.full((2, 2, 2), np.nan)], None) == 0.0


def test_cli_no_run_and_refusals(tmp_path, capsys):
    assert demo_cli.main([str(tmp_path / "d"), "--design", "fiac", "--no-run"]) == 0
    assert sorted(p.name for p in (tmp_path / "d" / "designs").iterdir()) == [
        f"sub-01_task-fiac_run-{r}_space-MNI152NLin2009cAsym_design.tsv" for r in ("1", "2")
    ]
    assert (tmp_path / "d" / "bids" / "code" / "demo_truth.json").is_file()
    assert not (tmp_path / "d" / "output").exists()
    assert demo_cli.main([str(tmp_path / "e"), "--design", "fiac", "--subjects", "2"]) == 2
    assert "--subjects apply to --design faces only" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_cli_runs_the_example_analysis(tmp_path, monkeypatch):
    """Without --no-run the demo passes the designs and the example's numeric contrasts."""
    seen = []
    monkeypatch.setattr(demo_cli, "cli_main", lambda argv: seen.append(argv) or 0)
    assert demo_cli.main([str(tmp_path), "--design", "fiac", "--", "--no-pdf"]) == 0
    (argv,) = seen
    assert argv[:3] == [str(tmp_path / "bids"), str(tmp_path / "output"), "participant"]
    assert argv[argv.index("--design-dir") + 1] == str(tmp_path / "designs")
    contrasts = [argv[i + 1] for i, a in enumerate(argv) if a == "--contrast"]
    assert "DSt_minus_SSt=[-1,-1,1,1]" in contrasts
    assert "DSp_minus_SSp=[-1,1,-1,1]" in contrasts and len(contrasts) == 7
    f_contrasts = [argv[i + 1] for i, a in enumerate(argv) if a == "--f-contrast"]
    assert f_contrasts == ["Effects_of_interest=[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]"]
    assert "--report-run-maps" in argv and argv[-1] == "--no-pdf"


def test_expressions_state_the_example_vectors():
    assert fiac_contrasts.expression_text([-1, -1, 1, 1]) == "-SSt - SSp + DSt + DSp"
    assert fiac_contrasts.expression_text([0, 0, -1, 1]) == "-DSt + DSp"
    assert fiac_contrasts.expression_text([1, 0, 0, -1]) == "SSt - DSp"
    assert fiac_contrasts.vector_text([[1, 0], [0, 1]]) == "[[1,0],[0,1]]"


def test_the_examples_analysis_with_given_designs_and_vectors_equals_the_expressions(fiac_demo):
    """What ``bids-glm-demo --design fiac`` runs (``--design-dir`` and numeric contrasts) gives
    the maps of the same contrasts written as expressions over bids-glm's own designs."""
    root = fiac_demo["root"]
    output = root / "given_designs"
    argv = [str(root / "bids"), str(output), "participant", "--work-dir", str(root / "work")]
    argv += [*fiac_contrasts.analysis_arguments(root / "designs"), "--no-reports"]
    assert bids_glm_main(argv) == 0
    labels = [*fiac_contrasts.T_CONTRASTS, *fiac_contrasts.F_CONTRASTS]
    for name in labels:
        label = bids_label(name)
        for run in (None, "1", "2"):
            given = _z_map(output, label, run)
            built = _z_map(fiac_demo["output"], label, run)
            np.testing.assert_allclose(given, built, atol=1e-3, err_msg=f"{label} run {run}")
