"""Atomic, deterministic writing of outputs: bytes, JSON, TSV, and maps by a writer object.

Every file is written to a hidden temporary name in its folder and renamed, so a process
killed at any point leaves either the previous file or the complete new one.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from bids_glm.derivatives.naming import geometry_file_path, map_label, sidecar_path
from bids_glm.errors import OutputError
from bids_glm.image.geometry import VolumeGeometry
from bids_glm.runtime.threads import spare_cores, thread_budget

FILE_MODE = 0o666
MAX_PENDING_MAPS = 24  # maps queued for the writer threads (1.4 MB each at 340k voxels)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file in the same folder, then rename it to ``path``.

    The rename is atomic: a process killed at any point leaves either the previous file or
    the complete new one under ``path`` (at most a hidden ``.*.tmp`` file beside it).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
    except OSError as err:
        raise OutputError(f"{path}: cannot write ({_reason(err)})") from err
    with _renamed_into_place(Path(tmp_name), path):
        os.fchmod(handle, FILE_MODE & ~_UMASK)  # mkstemp makes 0600; outputs are shared
        with os.fdopen(handle, "wb") as stream:
            _write_payload(stream, payload)


@contextmanager
def _renamed_into_place(tmp_name: Path, path: Path) -> Iterator[None]:
    """Rename ``tmp_name`` to ``path`` once the block has filled it; on any failure remove
    it, and name ``path`` in an ``OutputError`` for a system error (disk full, quota...)."""
    try:
        yield
        os.replace(tmp_name, path)
    except BaseException as err:
        tmp_name.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OutputError(f"{path}: cannot write ({_reason(err)})") from err
        raise


def write_copy_atomic(path: Path, original: Path, payload: bytes) -> None:
    """Make ``path`` a copy of ``original`` (whose bytes are ``payload``), atomically.

    A hard link where the file system allows one (no second write of the bytes), else
    the bytes written (`write_bytes_atomic`).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_name = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
        os.link(original, tmp_name)  # fails if the name exists: then written instead
    except OSError:
        write_bytes_atomic(path, payload)
        return
    with _renamed_into_place(tmp_name, path):
        pass


def _write_payload(stream, payload: bytes) -> None:
    """Write every byte of ``payload`` to ``stream`` (one place to simulate a full disk)."""
    stream.write(payload)


def _reason(err: OSError) -> str:
    """The system's words for an ``OSError``, e.g. ``No space left on device``."""
    return err.strerror or str(err)


def json_bytes(document: Mapping) -> bytes:
    """Deterministic JSON: sorted keys, 2-space indent, trailing newline."""
    return (json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def write_json(path: Path, document: Mapping) -> None:
    """Atomically write a JSON document with sorted keys."""
    write_bytes_atomic(path, json_bytes(document))


def write_tsv(path: Path, table: pd.DataFrame) -> None:
    """Atomically write a table as a BIDS TSV (n/a for missing values, no index)."""
    text = table.to_csv(sep="\t", index=False, na_rep="n/a", lineterminator="\n")
    write_bytes_atomic(path, text.encode())


def write_mask(path: Path, geometry: VolumeGeometry) -> None:
    """Write the geometry's mask of analysed locations (one file per hemisphere on surfaces)."""
    for extra, payload in geometry.encode_mask_files():
        write_bytes_atomic(geometry_file_path(path, extra, geometry.extension), payload)


def map_files(path: Path, geometry: VolumeGeometry) -> list[Path]:
    """The files a map named ``path`` is written to: itself, or one per hemisphere."""
    return [
        geometry_file_path(path, extra, geometry.extension) for extra in geometry.file_entities()
    ]


def _write_map_file(
    path: Path,
    values: np.ndarray,
    geometry: VolumeGeometry,
    sidecars: Mapping[Path, Mapping],
) -> None:
    """Encode (compress) the map once; write it to ``path``, link (or write) it to the other
    paths of ``sidecars`` (path -> sidecar, ``path`` first), then each path's sidecar."""
    copies = [destination for destination in sidecars if destination != path]
    for extra, payload in geometry.encode_files(values, map_label(path)):
        written = geometry_file_path(path, extra, geometry.extension)
        write_bytes_atomic(written, payload)
        for destination in copies:
            copy = geometry_file_path(destination, extra, geometry.extension)
            write_copy_atomic(copy, written, payload)
    for destination, sidecar in sidecars.items():
        for file in map_files(destination, geometry):
            write_json(sidecar_path(file), sidecar)


class MapWriter:
    """Writes maps (image + JSON sidecar), now or in background threads.

    With ``n_threads`` 0 every map is on disk when :meth:`write_map` returns. With threads,
    the image is built, compressed and written by a thread from a float32 copy of the
    values, at most ``max_pending`` waiting at once (a further one waits for the oldest);
    use it as a context manager: every map is on disk, or its error raised, when the block
    ends.
    """

    @classmethod
    def for_budget(cls) -> MapWriter:
        """A writer with a thread per core of the budget, or none where no core is spare
        (``--n-cpus 1``: maps are written as they are made, in the calling thread)."""
        return cls(thread_budget() if spare_cores() > 0 else 0)

    def __init__(self, n_threads: int = 0, max_pending: int = MAX_PENDING_MAPS) -> None:
        self._pool = (
            ThreadPoolExecutor(n_threads, thread_name_prefix="bids-glm-write")
            if n_threads > 0
            else None
        )
        self._max_pending = max_pending
        self._pending: deque[Future] = deque()

    def write_map(
        self,
        path: Path,
        values: np.ndarray,
        geometry: VolumeGeometry,
        sidecar: Mapping,
        copies: Mapping[Path, Mapping] | None = None,
    ) -> None:
        """Write ``values`` (one per analysed location) as a float32 map, plus its JSON.

        ``copies`` maps further paths of the same map (same ``map_label``) to their own
        sidecars: the image is compressed once and its bytes written to each. With threads,
        the sidecars are written by the thread too, after the image.
        """
        values = np.array(values, dtype=np.float32)  # a copy, owned by the (queued) write
        sidecars = {path: sidecar, **(copies or {})}
        # compression releases the GIL: let it overlap the next computations
        self.submit(_write_map_file, path, values, geometry, sidecars)

    def submit(self, function: Callable[..., None], *args) -> None:
        """Call ``function(*args)`` in a writer thread (now, without threads).

        For work whose only result is files (a map's image, a cluster table), so that it
        overlaps the computations that follow; errors are raised by `finish`.
        """
        if self._pool is None:
            function(*args)
            return
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()
        if len(self._pending) >= self._max_pending:  # bounded memory: wait for the oldest
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(function, *args))

    def finish(self) -> None:
        """Wait for every queued map; raise the first error."""
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> MapWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.finish()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
