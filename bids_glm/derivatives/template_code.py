"""jinja2 templates compiled in a forked child process, their code handed back.

Compiling the methods templates (parsing, generating Python, compiling it) holds the GIL
for ~0.2 s: in a thread of the parent it delays the start of the fit by as much, and at the
end of a run, the writing of the maps. A child forked at start-up (`start_compiling`)
compiles them on the idle core and sends back the compiled code, which jinja2 loads through
its bytecode cache (`HandedBackCode`) where it would have compiled: the same templates,
checked against their source (jinja2 recompiles code whose source changed). Where forking
is not safe, or the child fails, the templates compile in a thread as before, or when first
used.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import jinja2

from bids_glm.runtime.forked_call import ForkedCall, start_forked_call
from bids_glm.runtime.threads import spare_cores


@dataclass
class _CodeStore:
    """Compiled code by (environment name, jinja2 cache key), and the child bringing more."""

    code: dict[tuple[str, str], bytes] = field(default_factory=dict)
    child: ForkedCall | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, environment: str, key: str) -> bytes | None:
        """The code of a template, waiting for the child the first time it is asked for."""
        with self.lock:
            if self.child is not None:
                returned, code = self.child.result()
                self.child = None
                if returned:
                    self.code.update(code)
            return self.code.get((environment, key))


_STORE = _CodeStore()


class HandedBackCode(jinja2.BytecodeCache):
    """jinja2's bytecode cache of one environment: the code this process compiled, or the
    code the child compiled (`start_compiling`)."""

    def __init__(self, environment: str) -> None:
        self.environment = environment

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = _STORE.get(self.environment, bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)  # reset if compiled from another source

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        _STORE.code[(self.environment, bucket.key)] = bucket.bytecode_to_string()


def start_compiling(compile_all: Callable[[], None]) -> None:
    """Run ``compile_all`` (which loads templates of environments using `HandedBackCode`)
    in a forked child, whose compiled code is taken when first needed; in a thread where
    forking is not safe. Nothing is done if a child is compiling already, or where no core
    is spare (``--n-cpus 1``: templates are compiled when first used)."""
    if _STORE.child is not None or spare_cores() < 1:
        return
    _STORE.child = start_forked_call(_compiled_code, compile_all)
    if _STORE.child is None:
        threading.Thread(target=compile_all, name="bids-glm-templates", daemon=True).start()


def _compiled_code(compile_all: Callable[[], None]) -> dict[tuple[str, str], bytes]:
    compile_all()
    return _STORE.code
