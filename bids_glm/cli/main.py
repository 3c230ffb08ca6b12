"""``bids-glm``: the entry point. Parse the arguments, set up logging and the thread budget,
validate the arguments into ``Settings`` (:mod:`bids_glm.cli.validate`) and run the level.

Exit codes: 0 success; 1 analysis failure; 2 usage error; 3 input not usable.
The console command and ``python -m bids_glm`` run `command` (main, then a quick exit);
`main` returns its code, for callers in Python.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import shlex
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from bids_glm.cli.parser import build_parser
from bids_glm.cli.validate import settings_from_args
from bids_glm.errors import EXIT_ANALYSIS_FAILURE, EXIT_INTERRUPTED, BidsGlmError
from bids_glm.runtime.logs import configure_logging
from bids_glm.runtime.out_of_memory import is_out_of_memory, out_of_memory_error
from bids_glm.runtime.threads import available_cores, limit_threads
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")


def _run(settings: Settings) -> int:
    if settings.analysis_level == "group":
        _start_up_done()
        _run_group_level(settings)
        return 0
    from bids_glm.inputs.discovery import start_discovery

    # pybids' indexing uses the idle core while the fitting modules are imported
    discovery = None if settings.reports_only else start_discovery(settings)
    from bids_glm.pipeline.participant import run_participant_level

    _start_up_done()
    run_participant_level(settings, discovery)
    return 0


def _start_up_done() -> None:
    """Collect garbage again, leaving the objects made so far (modules, mostly) out of it.

    ``gc.freeze`` moves them to the permanent generation, so later collections do not walk
    them (~0.1 s saved over a run); they are freed by reference counting as usual.
    """
    gc.freeze()
    gc.enable()


def _run_group_level(settings: Settings) -> None:
    from bids_glm.pipeline.group import group_options, run_group_level
    from bids_glm.pipeline.reports import render_group_report

    if not settings.reports_only:
        options = group_options(settings)
        written = run_group_level(options)
        LOGGER.info("group level: %d map(s) written to %s", len(written), options.output_dir)
    if settings.write_reports or settings.reports_only:
        render_group_report(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bids-glm`` with ``argv`` and return the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 success, 1 analysis failure, 2 usage error, 3 input not usable, 130 interrupted.
    """
    collecting = gc.isenabled()
    # Start-up imports create many objects and free few: cyclic garbage collection there
    # costs ~10% of the import time and reclaims nothing. It is on again once the modules
    # are loaded (`_start_up_done`), and in any case when this call returns.
    gc.disable()
    try:
        return _main(argv)
    finally:
        if collecting:
            gc.enable()


def command() -> NoReturn:
    """Run `main` on the command line's arguments and end the process with its code.

    When `main` returns, every output is written and closed. Python's own exit would then
    join the threads left (process pools' managers), run the exit handlers (logging's
    flush, multiprocessing's joins) and free the objects of some 1,100 imported modules one
    by one (~0.05 s, measured on a participant run). This runs the first two as that exit
    does, flushes the standard streams and ends the process without the third.
    """
    code = main()
    join_threads = getattr(threading, "_shutdown", None)  # CPython's own exit steps
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if join_threads is None or run_exit_handlers is None:
        sys.exit(code)
    try:
        join_threads()
    except Exception:  # as Python's exit does, go on (e.g. Python 3.11's process-pool race
        # at exit: a finished pool's wake-up pipe already closed); not the run's failure
        LOGGER.debug("exception ignored while joining threads at exit", exc_info=True)
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a reader that went away
            pass
    os._exit(code)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(exc.code or 0)
    verbosity = -1 if args.quiet else args.verbose
    configure_logging(verbosity)
    limit_threads(args.n_cpus or available_cores())
    try:
        arguments = sys.argv[1:] if argv is None else list(argv)
        settings = settings_from_args(args, shlex.join(["bids-glm", *arguments]))
        if settings.work_dir is None:
            with tempfile.TemporaryDirectory(prefix="bids-glm-work-") as tmp:
                return _run(replace(settings, work_dir=Path(tmp)))
        return _run(settings)
    except BidsGlmError as err:
        if verbosity >= 1:
            LOGGER.exception("failed")
        print(f"bids-glm: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("bids-glm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # a bug, or no memory left: say so briefly, traceback with -v
        if verbosity >= 1:
            LOGGER.exception("unexpected failure")
        if is_out_of_memory(err):
            print(f"bids-glm: error: {out_of_memory_error(err)}", file=sys.stderr)
            return EXIT_ANALYSIS_FAILURE
        print(
            f"bids-glm: internal error: {type(err).__name__}: {err} "
            "(rerun with -v for the traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_ANALYSIS_FAILURE
