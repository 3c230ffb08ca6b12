"""Methods text (logs/CITATION.*): settings reach the text, references, escaping, packaging."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from bids_glm import __version__
from bids_glm.derivatives.methods import (
    AR1_BIN_WIDTH,
    DEPENDENCIES,
    MethodsFacts,
    methods_facts,
    render_methods,
    write_methods,
)
from bids_glm.derivatives.naming import CITATION_FORMATS
from bids_glm.design.contrast_options import ContrastSpec, FContrastSpec
from bids_glm.design.hrf_spec import parse_hrf_model
from bids_glm.glm.fit import fit_glm
from bids_glm.image.mask_rule import UNION, MaskRule
from bids_glm.inputs.confounds import ConfoundStrategy, ScrubRule
from bids_glm.inputs.events import EventSpec
from bids_glm.settings import ModelSettings, Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
VERSIONS = {"pybids": "0.22.0", "nibabel": "5.4.2", "numpy": "2.4.6", "scipy": "1.17.1"}
VERSIONS["pandas"] = "3.1.1"


def make_facts(model: ModelSettings | None = None, **changes) -> MethodsFacts:
    facts = MethodsFacts(
        software_version="0.1.0",
        dependency_versions=VERSIONS,
        n_participants=2,
        tasks=("faces",),
        n_runs=4,
        space="MNI152NLin2009cAsym",
        tr_s=(2.0,),
        model=model or ModelSettings(),
        command_line="bids-glm /data /out participant",
        conditions=("face", "house"),
    )
    return dataclasses.replace(facts, **changes)


def markdown(model: ModelSettings | None = None, **changes) -> str:
    return render_methods(make_facts(model, **changes))["md"]


def bib_keys(documents: dict[str, str]) -> list[str]:
    return re.findall(r"^@\w+\{([^,]+),", documents["bib"], flags=re.MULTILINE)


# --- every setting is visible in CITATION.md ---------------------------------------------

SETTING_CASES = {
    "smoothing 5 mm": (
        ModelSettings(smoothing_fwhm_mm=5.0),
        ["Gaussian kernel of 5 mm full width at half maximum"],
        ["No spatial smoothing"],
    ),
    "no smoothing": (ModelSettings(), ["No spatial smoothing was applied"], ["FWHM"]),
    "ols": (
        ModelSettings(noise_model="ols"),
        ["by ordinary least squares (OLS), assuming temporally independent errors"],
        ["AR(1)", "prewhitened"],
    ),
    "ar1": (
        ModelSettings(noise_model="ar1"),
        ["AR(1) (Worsley et al. 2002)", "binned in steps of 0.01", "prewhitened"],
        ["assuming temporally independent errors"],
    ),
    "glover": (
        ModelSettings(hrf_model=parse_hrf_model("glover")),
        ["Glover canonical haemodynamic response function (Glover 1999)."],
        ["SPM canonical", "derivative", "Friston"],
    ),
    "spm": (
        ModelSettings(hrf_model=parse_hrf_model("spm")),
        ["SPM canonical haemodynamic response function (Friston et al. 1998)."],
        ["Glover", "derivative"],
    ),
    "glover + derivative": (
        ModelSettings(hrf_model=parse_hrf_model("glover + derivative")),
        ["(Glover 1999) and with its temporal derivative (Friston et al. 1998)"],
        ["dispersion"],
    ),
    "spm + derivative + dispersion": (
        ModelSettings(hrf_model=parse_hrf_model("spm + derivative + dispersion")),
        ["SPM canonical haemodynamic response function and with its temporal and dispersion"],
        ["Glover"],
    ),
    "fir": (
        ModelSettings(hrf_model=parse_hrf_model("fir"), fir_delays_scans=(0, 1, 2)),
        ["finite impulse response (FIR) basis", "for delays of 0, 1 and 2 scans."],
        ["haemodynamic response function", "Glover", "Friston"],
    ),
    "fir one delay": (
        ModelSettings(hrf_model=parse_hrf_model("fir"), fir_delays_scans=(1,)),
        ["one regressor per condition and delay, for a delay of 1 scan."],
        [],
    ),
    "no hrf": (
        ModelSettings(hrf_model=parse_hrf_model("none")),
        ["not convolved with any haemodynamic response model"],
        ["Glover", "FIR"],
    ),
    "cosine 0.01 Hz": (
        ModelSettings(drift_model="cosine", high_pass_hz=0.01),
        ["discrete cosine basis set with a cut-off frequency of 0.01 Hz (period 100 s)"],
        ["polynomial"],
    ),
    "cosine 0.008 Hz": (
        ModelSettings(drift_model="cosine", high_pass_hz=0.008),
        ["cut-off frequency of 0.008 Hz (period 125 s)"],
        ["0.01 Hz"],
    ),
    "polynomial": (
        ModelSettings(drift_model="polynomial", drift_order=3),
        ["polynomials of degree 1 to 3"],
        ["cosine"],
    ),
    "no drift": (
        ModelSettings(drift_model="none"),
        ["No drift regressors were included"],
        ["cosine", "polynomial"],
    ),
    "dummy scans": (
        ModelSettings(dummy_scans=4),
        ["The first 4 volumes of each run were discarded as dummy scans"],
        ["No volumes were discarded"],
    ),
    "one dummy scan": (
        ModelSettings(dummy_scans=1),
        ["The first volume of each run was discarded"],
        [],
    ),
    "motion6": (
        ModelSettings(confounds=ConfoundStrategy(presets=("motion6",))),
        ["(Esteban et al. 2019): the six rigid-body motion parameters;"],
        ["No confound regressors", "Satterthwaite", "censored"],
    ),
    "motion24 + wm_csf + patterns": (
        ModelSettings(
            confounds=ConfoundStrategy(presets=("motion24", "wm_csf"), patterns=("a_comp_*",))
        ),
        [
            "squares of all twelve (Satterthwaite et al. 2013), the mean white-matter and "
            "cerebrospinal-fluid signals and the columns matching `a_comp_*`;"
        ],
        ["rigid-body"],
    ),
    "acompcor + global + cosine": (
        ModelSettings(confounds=ConfoundStrategy(presets=("acompcor", "global_signal", "cosine"))),
        ["CompCor components (Behzadi et al. 2007)", "the global signal", "cosine drift regr"],
        [],
    ),
    "scrubbing": (
        ModelSettings(confounds=ConfoundStrategy(scrub=ScrubRule(fd_mm=0.5, dvars=1.5))),
        [
            "Volumes with a framewise displacement above 0.5 mm or a standardised DVARS above "
            "1.5 (Power et al. 2014) were censored",
            "No confound regressors were included",
        ],
        ["non-steady-state"],
    ),
    "non-steady-state": (
        ModelSettings(confounds=ConfoundStrategy(non_steady_state=True)),
        ["Volumes that the preprocessing flagged as non-steady-state were censored"],
        ["framewise"],
    ),
    "precision fixed effects": (
        ModelSettings(fixed_effects="precision"),
        ["fixed-effects model (Worsley et al. 2002) that weights each run's estimate by its"],
        ["equal weights"],
    ),
    "unweighted fixed effects": (
        ModelSettings(fixed_effects="unweighted", noise_model="ols"),
        ["averages the runs' estimates with equal weights", "as Nilearn does"],
        ["precision", "Worsley"],
    ),
    "global scaling": (
        ModelSettings(signal_scaling="global"),
        ["around the grand mean m of the run"],
        ["temporal mean"],
    ),
    "no scaling": (ModelSettings(signal_scaling="none"), ["The signal was not scaled"], ["100 ("]),
    "slice-time reference": (
        ModelSettings(slice_time_ref=0.5),
        ["offset by 0.5 of the repetition time"],
        ["StartTime"],
    ),
    "events columns": (
        ModelSettings(
            events=EventSpec("cond", amplitude_column="amp", parametric_modulators=("rt", "x"))
        ),
        ["`cond` column", "amplitudes from the `amp` column", "from the `rt` and `x` columns"],
        ["`trial_type`", "`modulation`"],
    ),
    "user contrasts": (
        ModelSettings(
            contrasts=(ContrastSpec("faceVsHouse", "face - house", {"face": 1, "house": -1}),),
            f_contrasts=(FContrastSpec("effects", "face; house", ({"face": 1}, {"house": 1})),),
        ),
        [
            "t contrasts `faceVsHouse` = `face - house`, and the F contrast `effects` "
            "(2 rows: `face; house`)."
        ],
        [],
    ),
}


@pytest.mark.parametrize("case", SETTING_CASES, ids=list(SETTING_CASES))
def test_each_setting_is_stated(case):
    model, present, absent = SETTING_CASES[case]
    text = markdown(model)
    for phrase in present:
        assert phrase in text
    for phrase in absent:
        assert phrase not in text


@pytest.mark.parametrize("case", sorted(SETTING_CASES))
def test_punctuation_follows_words_directly(case):
    """No space before a full stop, comma, semicolon or closing parenthesis (a template's
    stray newline becomes one), none after an opening parenthesis."""
    model, _, _ = SETTING_CASES[case]
    for fmt in ("md", "html", "tex"):
        text = render_methods(make_facts(model))[fmt]
        assert not re.findall(r"\w[ \n]+[.,;)]|\([ \n]", text), (fmt, text)


def test_the_analysed_series_variant_and_voxel_size_are_stated():
    text = markdown(bold_variant=("desc-preproc", "res-2"), voxel_sizes_mm=((2.0, 2.0, 2.0),))
    assert (
        "using the preprocessed BOLD series (`desc-preproc` and `res-2`) in "
        "`MNI152NLin2009cAsym` space, on a grid of 2 mm isotropic voxels." in text
    )
    text = markdown(voxel_sizes_mm=((2.0, 2.0, 2.5), (3.0, 3.0, 3.0)))
    assert "on a grid of 2 x 2 x 2.5 mm and 3 mm isotropic voxels." in text
    assert "series in `MNI152NLin2009cAsym` space." in markdown()  # surfaces: no grid


def test_different_settings_give_different_texts():
    texts = {repr(model): markdown(model) for model, _, _ in SETTING_CASES.values()}
    assert len(texts) > 20
    assert len(set(texts.values())) == len(texts)


def test_facts_beyond_the_model_are_stated():
    text = markdown(
        tasks=("a", "b"),
        tr_s=(2.0, 2.5),
        space=None,
        n_runs=1,
        n_participants=1,
        mask_rule=MaskRule("fraction", 0.5),
    )
    assert "1 run of 1 participant (tasks `a` and `b`; repetition times 2 and 2.5 s)" in text
    assert "in the space of the derivatives" in text
    assert "more than a fraction 0.5 of the runs' brain masks" in text
    assert "union of the runs' brain masks" in markdown(mask_rule=UNION)
    assert "user-supplied mask (`roi.nii.gz`)" in markdown(user_mask="roi.nii.gz")
    default = markdown()
    assert "bids-glm 0.1.0" in default
    for name, label in [("pybids", "PyBIDS"), ("nibabel", "NiBabel"), ("numpy", "NumPy")]:
        assert f"{label} {VERSIONS[name]}" in default
    assert "SciPy 1.17.1" in default and "pandas 3.1.1" in default
    assert "4 runs of 2 participants" in default
    assert "conditions (`face` and `house`)" in default
    assert "`bids-glm /data /out participant`" in default


# --- references ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "cited", "not_cited"),
    [
        (ModelSettings(), {"glover1999hrf", "worsley2002general"}, {"friston1998event"}),
        (ModelSettings(hrf_model=parse_hrf_model("spm")), {"friston1998event"}, {"glover1999hrf"}),
        (
            ModelSettings(hrf_model=parse_hrf_model("glover + derivative")),
            {"glover1999hrf", "friston1998event"},
            set(),
        ),
        (
            ModelSettings(hrf_model=parse_hrf_model("fir")),
            set(),
            {"glover1999hrf", "friston1998event"},
        ),
        (
            ModelSettings(noise_model="ols", fixed_effects="unweighted"),
            set(),
            {"worsley2002general"},
        ),
        (
            ModelSettings(confounds=ConfoundStrategy(presets=("motion24", "acompcor"))),
            {"esteban2019fmriprep", "satterthwaite2013improved", "behzadi2007compcor"},
            {"power2014methods"},
        ),
        (
            ModelSettings(confounds=ConfoundStrategy(scrub=ScrubRule(fd_mm=0.9, dvars=None))),
            {"power2014methods"},
            {"esteban2019fmriprep", "satterthwaite2013improved", "behzadi2007compcor"},
        ),
    ],
)
def test_only_references_that_apply_are_cited(model, cited, not_cited):
    keys = set(bib_keys(render_methods(make_facts(model))))
    always = {
        "gorgolewski2016bids",
        "yarkoni2019pybids",
        "brett2016nibabel",
        "harris2020numpy",
        "virtanen2020scipy",
        "mckinney2010pandas",
        "abraham2014nilearn",
    }
    assert always | cited <= keys
    assert not keys & not_cited


def parse_bibtex(text: str) -> dict[str, dict[str, str]]:
    """A tiny BibTeX reader: entries, their keys and ``name = {value}`` fields."""
    entries = {}
    for entry_type, key, body in re.findall(r"@(\w+)\s*\{\s*([^,\s]+)\s*,(.*?)\n\}", text, re.S):
        assert body.count("{") == body.count("}"), key
        fields = dict(re.findall(r"(\w+)\s*=\s*\{(.*)\},?\s*$", body, re.M))
        entries[key] = {"type": entry_type, **fields}
    assert len(entries) == text.count("\n@") + text.startswith("@"), "unparsed entries"
    return entries


def test_bibliography_parses_with_complete_entries():
    source = parse_bibtex((REPO_ROOT / "boilerplate" / "references.bib").read_text())
    full = ModelSettings(
        hrf_model=parse_hrf_model("spm + derivative"),
        confounds=ConfoundStrategy(presets=("motion24", "acompcor"), scrub=ScrubRule(0.5, None)),
    )
    documents = render_methods(make_facts(full))
    rendered = parse_bibtex(documents["bib"])
    assert len(rendered) == 13 and set(rendered) <= set(source)
    for entry in source.values():
        assert {"author", "title", "year", "doi"} <= set(entry)
        assert re.fullmatch(r"(19|20)\d\d", entry["year"])
        assert re.fullmatch(r"10\.\d{4,5}/\S+", entry["doi"])
    # The text, the LaTeX citations, the HTML anchors and the Markdown list agree.
    order = bib_keys(documents)
    tex_keys = [
        k
        for group in re.findall(r"\\citep\{([^}]+)\}", documents["tex"])
        for k in group.split(",")
    ]
    assert list(dict.fromkeys(tex_keys)) == order
    assert re.findall(r'<li id="ref-([^"]+)">', documents["html"]) == order
    assert len(re.findall(r"^\d+\. ", documents["md"], re.M)) == len(order)


@pytest.mark.parametrize(
    ("key", "journal", "volume", "pages", "year", "doi"),
    [
        ("glover1999hrf", "NeuroImage", "9", "416--429", "1999", "10.1006/nimg.1998.0419"),
        ("friston1998event", "NeuroImage", "7", "30--40", "1998", "10.1006/nimg.1997.0306"),
        ("worsley2002general", "NeuroImage", "15", "1--15", "2002", "10.1006/nimg.2001.0933"),
        ("harris2020numpy", "Nature", "585", "357--362", "2020", "10.1038/s41586-020-2649-2"),
        (
            "virtanen2020scipy",
            "Nature Methods",
            "17",
            "261--272",
            "2020",
            "10.1038/s41592-019-0686-2",
        ),
        ("gorgolewski2016bids", "Scientific Data", "3", "160044", "2016", "10.1038/sdata.2016.44"),
        (
            "yarkoni2019pybids",
            "Journal of Open Source Software",
            "4",
            "1294",
            "2019",
            "10.21105/joss.01294",
        ),
        (
            "abraham2014nilearn",
            "Frontiers in Neuroinformatics",
            "8",
            "14",
            "2014",
            "10.3389/fninf.2014.00014",
        ),
    ],
)
def test_key_references_have_their_published_data(key, journal, volume, pages, year, doi):
    entry = parse_bibtex((REPO_ROOT / "boilerplate" / "references.bib").read_text())[key]
    assert (entry["journal"], entry["volume"], entry["pages"]) == (journal, volume, pages)
    assert (entry["year"], entry["doi"]) == (year, doi)


def test_formatted_references():
    text = markdown(ModelSettings(hrf_model=parse_hrf_model("glover")))
    assert (
        "Glover GH (1999). Deconvolution of impulse response in event-related BOLD fMRI. "
        "NeuroImage 9(4):416\u2013429. <https://doi.org/10.1006/nimg.1998.0419>"
    ) in text
    assert (
        "Harris CR, Millman KJ, van der Walt SJ, Gommers R, Virtanen P, Cournapeau D, et al."
        in text
    )
    assert "Brett M, Markiewicz CJ, Hanke M, et al. (2016)" in text


# --- escaping ------------------------------------------------------------------------------

HOSTILE = "<script>alert('x')</script>"


def test_html_escapes_names_from_data_and_settings():
    model = ModelSettings(contrasts=(ContrastSpec(HOSTILE, "a & b", {"a": 1.0}),))
    facts = make_facts(model, conditions=(HOSTILE, "b"), command_line=f"run {HOSTILE}")
    html = render_methods(facts)["html"]
    assert "<script>" not in html
    assert html.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") == 3  # condition,
    assert "<code>&lt;script&gt;alert(" in html  # contrast and command, each as code
    assert "<code>a &amp; b</code>" in html
    # The page's own markup is intact.
    assert html.count("<p>") == html.count("</p>") == 5
    assert '<a href="#ref-glover1999hrf">Glover 1999</a>' in html


def test_latex_escapes_special_characters():
    model = ModelSettings(
        contrasts=(ContrastSpec("a_b & c%", "a_b - c", {"a_b": 1.0, "c": -1.0}),),
        events=EventSpec("trial_type", amplitude_column="amp#1"),
    )
    facts = make_facts(model, conditions=("a_b", "c~d^e"), command_line="x {y} $HOME \\ `z`")
    tex = render_methods(facts)["tex"]
    assert r"\texttt{a\_b \& c\%} = \texttt{a\_b - c}" in tex
    assert r"\texttt{amp\#1}" in tex
    assert r"\texttt{c\textasciitilde{}d\textasciicircum{}e}" in tex
    assert r"\texttt{x \{y\} \$HOME \textbackslash{} \textasciigrave{}z\textasciigrave{}}" in tex
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert re.findall(r"(?<!\\)[%&#_$^~]", body) == []
    assert (
        "50\\%"
        in render_methods(
            make_facts(ModelSettings(confounds=ConfoundStrategy(presets=("acompcor",))))
        )["tex"]
    )


def test_markdown_keeps_names_literal():
    model = ModelSettings(contrasts=(ContrastSpec("x`y", "a*b", {"a": 1.0}),))
    text = markdown(model, conditions=("a_b*c",), space="MNI_*")
    assert "``x`y`` = `a*b`" in text
    assert "`a_b*c`" in text and "`MNI_*` space" in text


# --- determinism and writing ---------------------------------------------------------------


def test_rendering_is_deterministic_and_undated():
    facts = make_facts(ModelSettings(confounds=ConfoundStrategy(presets=("motion6",))))
    first, second = render_methods(facts), render_methods(facts)
    assert first == second
    assert list(first) == list(CITATION_FORMATS)
    for text in first.values():
        assert not re.search(r"\b\d{4}-\d{2}-\d{2}\b|\d{2}:\d{2}:\d{2}", text)


def test_write_methods_writes_four_files_atomically(tmp_path):
    facts = make_facts()
    write_methods(tmp_path, facts)
    first = {p.name: p.read_bytes() for p in (tmp_path / "logs").iterdir()}
    assert sorted(first) == sorted(f"CITATION.{fmt}" for fmt in CITATION_FORMATS)
    expected = {f"CITATION.{fmt}": text for fmt, text in render_methods(facts).items()}
    assert {name: data.decode("utf-8") for name, data in first.items()} == expected
    write_methods(tmp_path, facts)
    assert {p.name: p.read_bytes() for p in (tmp_path / "logs").iterdir()} == first


def test_methods_facts_from_settings():
    settings = Settings(
        bids_dir=Path("/data"),
        output_dir=Path("/out"),
        analysis_level="participant",
        work_dir=Path("/work"),
        model=ModelSettings(smoothing_fwhm_mm=6.0),
        mask=Path("/masks/roi.nii.gz"),
        mask_combine=UNION,
    )
    facts = methods_facts(settings, 3, ["b", "a", "b"], 6, "T1w", [2.5, 2.0, 2.5], "cmd", "yx")
    assert facts.software_version == __version__
    assert facts.dependency_versions == {name: metadata.version(name) for name in DEPENDENCIES}
    assert (facts.tasks, facts.tr_s, facts.conditions) == (("a", "b"), (2.0, 2.5), ("x", "y"))
    assert (facts.user_mask, facts.mask_rule, facts.model) == (
        "roi.nii.gz",
        UNION,
        settings.model,
    )


def test_facts_are_validated():
    with pytest.raises(ValueError, match="at least one participant and one run"):
        make_facts(n_runs=0)
    with pytest.raises(ValueError, match="positive repetition times"):
        make_facts(tr_s=())
    with pytest.raises(ValueError, match="missing"):
        make_facts(dependency_versions={"numpy": "2"})


def test_ar1_bin_width_matches_the_fit():
    n_bins = inspect.signature(fit_glm).parameters["n_bins"].default
    assert AR1_BIN_WIDTH == pytest.approx(1 / n_bins)


# --- packaging -----------------------------------------------------------------------------


def setuptools_table() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_is_listed_for_the_wheel():
    listed = set(setuptools_table()["packages"])
    source = {
        ".".join(init.parent.relative_to(REPO_ROOT).parts)
        for init in (REPO_ROOT / "bids_glm").rglob("__init__.py")
    }
    data_only = {"bids_glm.boilerplate", "bids_glm.report.templates"}  # templates, no code
    assert source | data_only == listed


def test_templates_load_from_an_installed_layout(tmp_path):
    """Lay the package out as the wheel does (pyproject's mapping) and render from there."""
    table = setuptools_table()
    site = tmp_path / "site"
    shutil.copytree(
        REPO_ROOT / "bids_glm", site / "bids_glm", ignore=shutil.ignore_patterns("__pycache__")
    )
    source_dir = REPO_ROOT / table["package-dir"]["bids_glm.boilerplate"]
    target = site / "bids_glm" / "boilerplate"
    target.mkdir()
    for pattern in ["*.py", *table["package-data"]["bids_glm.boilerplate"]]:
        for path in source_dir.glob(pattern):
            shutil.copy(path, target / path.name)
    facts = make_facts()
    script = f"""
import dataclasses, json, sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path.insert(0, {str(site)!r})
from importlib import resources
import bids_glm.derivatives.methods as methods
from bids_glm.settings import ModelSettings
plain = {{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(sys.argv[1]).items()}}
facts = methods.MethodsFacts(**plain, model=ModelSettings())
print(json.dumps({{
    "package": methods.__file__,
    "templates": str(resources.files("bids_glm.boilerplate")),
    "documents": methods.render_methods(facts),
}}))
"""
    plain = {k: v for k, v in dataclasses.asdict(facts).items() if k not in ("model", "mask_rule")}
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(plain)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    answer = json.loads(result.stdout)
    assert answer["package"].startswith(str(site))
    assert answer["templates"] == str(target)
    assert answer["documents"] == render_methods(facts)


def test_templates_are_found_in_a_source_checkout_without_the_built_package():
    """``python -m bids_glm`` in a checkout imports the source tree, which has no
    ``bids_glm.boilerplate`` package: the templates are read from ``boilerplate/``."""
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path\n"
        "                    if not getattr(f, '__module__', '').startswith('__editable__')]\n"
        "from bids_glm.derivatives import methods\n"
        "print(methods.__file__)\n"
        "print(methods._template_source('methods.md.j2').count('{%'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    module_file, n_tags = done.stdout.split()
    assert Path(module_file).is_relative_to(REPO_ROOT / "bids_glm")
    assert int(n_tags) > 0
