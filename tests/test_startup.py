"""Start-up: what a volume run loads, and the methods templates it compiles."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from unittest import mock

import jinja2
from conftest import make_tiny_dataset
from test_methods import make_facts

from bids_glm.derivatives import methods, template_code
from bids_glm.runtime.forked_call import can_fork
from bids_glm.runtime.threads import THREADS_VARIABLE

# what a default volume run has no use for: mesh maths, the SPM12 preset's modules and, its
# runs having masks, image morphology (cluster tables are made from the voxels themselves)
UNUSED_MODULES = (
    "scipy.sparse",
    "scipy.spatial",
    "scipy.ndimage",
    "bids_glm.pipeline.spm_subject",
)


def test_volume_run_never_loads_mesh_or_spm12_machinery(tmp_path):
    """A whole volume participant run, in a fresh interpreter (other tests import anything)."""
    bids = make_tiny_dataset(tmp_path / "bids")
    script = textwrap.dedent(
        f"""
        import sys
        from bids_glm.cli.main import main

        code = main([{str(bids)!r}, {str(tmp_path / "out")!r}, "participant", "-q",
                     "--no-reports", "--smoothing-fwhm", "5", "--noise-model", "ar1"])
        loaded = sorted(m for m in sys.modules if m.startswith({UNUSED_MODULES!r}))
        print(code, loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.stdout.split() == ["0", "[]"], result.stderr
    assert any((tmp_path / "out" / "sub-01" / "func").glob("*_stat-z_statmap.nii.gz"))


def test_discovery_starts_before_pandas_is_loaded(tiny_dataset, tmp_path):
    """Settings and the discovery child need no pandas: the fork comes before its import."""
    script = textwrap.dedent(
        f"""
        import sys
        from bids_glm.cli.parser import build_parser
        from bids_glm.cli.validate import settings_from_args
        from bids_glm.inputs.discovery import start_discovery

        args = build_parser().parse_args([{str(tiny_dataset)!r}, {str(tmp_path / "out")!r},
            "participant", "--confounds", "motion6", "scrub:FD=0.5", "--condition-column", "a"])
        settings = settings_from_args(args, "bids-glm")
        loaded = "pandas" in sys.modules
        pending = start_discovery(settings)
        forked = pending.child is not None
        runs = pending.result().runs
        print(loaded, "pandas" in sys.modules, len(runs), forked)
        """
    )
    env = {**os.environ, THREADS_VARIABLE: "2"}  # a core to spare: discovery is forked
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.stdout.split() == ["False", "False", "1", "True"], result.stderr


def _fresh_template_state() -> None:
    """No compiled code, no environment, no child compiling (left by earlier runs)."""
    if template_code._STORE.child is not None:
        template_code._STORE.child.result()
        template_code._STORE.child = None
    methods._environment.cache_clear()
    template_code._STORE.code.clear()


def test_templates_compiled_in_a_child_render_the_same_text(monkeypatch):
    monkeypatch.setenv(THREADS_VARIABLE, "2")  # a core to spare (--n-cpus 2)
    facts = make_facts()
    _fresh_template_state()
    expected = methods.render_methods(facts)  # compiled here, at the first rendering
    compiled_here = dict(template_code._STORE.code)
    methods._environment.cache_clear()
    template_code._STORE.code.clear()
    methods.compile_templates()
    if can_fork():  # the code comes from the child: it is not compiled here
        assert template_code._STORE.child is not None
        with mock.patch.object(jinja2.Environment, "_parse", side_effect=AssertionError):
            assert methods.render_methods(facts) == expected
        assert template_code._STORE.code.keys() == compiled_here.keys()
    else:  # pragma: no cover - a thread compiles them
        assert methods.render_methods(facts) == expected


def test_with_no_core_to_spare_templates_compile_when_first_used(monkeypatch):
    """``--n-cpus 1``: no child, no thread; the first rendering compiles, same text."""
    monkeypatch.setenv(THREADS_VARIABLE, "2")
    facts = make_facts()
    _fresh_template_state()
    expected = methods.render_methods(facts)
    _fresh_template_state()
    monkeypatch.setenv(THREADS_VARIABLE, "1")
    threads = threading.active_count()
    methods.compile_templates()
    assert template_code._STORE.child is None and threading.active_count() == threads
    assert not template_code._STORE.code  # nothing compiled ahead
    assert methods.render_methods(facts) == expected


def test_code_compiled_from_another_source_is_not_used():
    _fresh_template_state()
    methods.render_methods(make_facts())
    (environment, key), code = next(iter(template_code._STORE.code.items()))
    stale = jinja2.bccache.Bucket(methods._environment(environment), key, "another source")
    stale.bytecode_from_string(code)
    assert stale.code is None  # refused: jinja2 compiles the template again
