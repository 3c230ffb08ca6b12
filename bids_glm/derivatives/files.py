"""BIDS-Derivatives names and atomic, deterministic writing of maps, tables and sidecars."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_glm import __version__

try:  # deterministic and fast; ISA-L's deflate is fast but not deterministic (its hash
    # table is not cleared: the same map compressed in two processes can differ by a byte)
    from zlib_ng import zlib_ng as _zlib
except ImportError:  # pragma: no cover - zlib-ng is a declared dependency
    import zlib as _zlib

BIDS_VERSION = "1.10.0"
CODE_URL = "https://github.com/bids-glm/bids-glm"
CONTAINER_ENV = "BIDS_GLM_CONTAINER"
GZIP_LEVEL = 1
GZIP_WBITS = 31  # 32 KiB window, gzip container (header without a time stamp)
GZIP_MEMLEVEL = 9
MAX_PENDING_MAPS = 48  # maps queued for the writer thread (~0.9 MB each at 227k voxels)
NIFTI1_DATA_OFFSET = 352  # 348-byte header + 4-byte extension flag
OUTPUT_README = """# bids-glm first-level statistics

Derivatives written by bids-glm: per-run design matrices (`*_design.tsv` + `.json`),
run-level and fixed-effects statistical maps (`*_statmap.nii.gz` + `.json`, one per
contrast and statistic) and analysis masks, in `sub-<label>/[ses-<label>/]func/`.
Each sidecar records the contrast, its weights per design column, the test, the degrees
of freedom and the input files (as BIDS URIs, see `DatasetLinks` in
`dataset_description.json`). The methods text with references is in `logs/`.
"""
# Outputs the BIDS specification does not (yet) define, hidden from the validator.
BIDS_IGNORED = (
    "*_statmap.nii.gz",
    "*_statmap.json",
    "*_design.tsv",
    "*_design.json",
    "*_clusters.tsv",
    "*_clusters.json",
    "*_smdl.json",
    "*_mask.nii.gz",
    "*_boldref.nii.gz",
    "*_boldref.json",
    "*.html",
    "*.pdf",
    "logs/",
    "figures/",
)
RUN_LEVEL_ENTITIES = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "space")
SUBJECT_LEVEL_ENTITIES = ("sub", "ses", "task", "space")


def subject_func_dir(output_dir: Path, entities: Mapping[str, str]) -> Path:
    """``OUTPUT_DIR/sub-<s>[/ses-<x>]/func``."""
    folder = output_dir / f"sub-{entities['sub']}"
    if "ses" in entities:
        folder = folder / f"ses-{entities['ses']}"
    return folder / "func"


def bids_name(
    entities: Mapping[str, str], keep: tuple[str, ...], extra: Mapping[str, str], suffix: str
) -> str:
    """Name from the ``keep`` entities present (in that order), then ``extra``, then suffix."""
    parts = [f"{k}-{entities[k]}" for k in keep if k in entities]
    parts += [f"{k}-{v}" for k, v in extra.items()]
    return "_".join([*parts, suffix])


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666
_UMASK = _current_umask()


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file in the same folder, then rename it to ``path``.

    The rename is atomic: a process killed at any point leaves either the previous file or
    the complete new one under ``path`` (at most a hidden ``.*.tmp`` file beside it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, FILE_MODE & ~_UMASK)  # mkstemp makes 0600; outputs are shared
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


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


def nifti_bytes(volume: np.ndarray, affine: np.ndarray) -> bytes:
    """An uncompressed single-file NIfTI-1 image of ``volume``, unscaled.

    The bytes are those of nibabel's ``Nifti1Image.to_bytes`` (header, empty extension
    flag, Fortran-order data), assembled directly: nibabel's writer makes extra passes over
    the data to choose a scaling that an unscaled image does not need.
    """
    header = nib.Nifti1Image(volume, affine).header
    header.set_xyzt_units("mm", "sec")
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header.set_data_offset(NIFTI1_DATA_OFFSET)
    header.set_slope_inter(1.0, 0.0)
    values = np.asarray(volume, dtype=header.get_data_dtype())
    extension_flag = bytes(NIFTI1_DATA_OFFSET - len(header.binaryblock))
    return header.binaryblock + extension_flag + values.tobytes(order="F")


def nifti_gz_bytes(volume: np.ndarray, affine: np.ndarray) -> bytes:
    """A deterministic ``.nii.gz`` payload (no timestamp in the gzip header).

    Maps are zeros outside the brain and noisy floats inside, where matches longer than a
    run are rare: run-length matching only (``Z_RLE``) is ~25 % faster than level 1's hashed
    matching and the files ~15 % smaller.
    """
    compressor = _zlib.compressobj(
        GZIP_LEVEL, _zlib.DEFLATED, GZIP_WBITS, GZIP_MEMLEVEL, _zlib.Z_RLE
    )
    return compressor.compress(nifti_bytes(volume, affine)) + compressor.flush()


def write_map(
    path: Path, values: np.ndarray, mask: np.ndarray, affine: np.ndarray, sidecar: Mapping
) -> None:
    """Write in-mask ``values`` as a float32 3-D map (zero outside the mask) plus its JSON.

    Inside `background_map_writes`, the map is built, compressed and written by the writer
    thread from a float32 copy of ``values`` (the caller may reuse its array at once).
    """
    in_mask = np.array(values, dtype=np.float32)  # a copy, owned by the (queued) writer
    if _QUEUE is None:
        _write_volume(path, in_mask, mask, affine)
    else:  # compression releases the GIL: let it overlap the next computations
        _QUEUE.submit(_write_volume, path, in_mask, mask, affine)
    write_json(path.with_name(path.name.replace(".nii.gz", ".json")), sidecar)


def _write_volume(path: Path, in_mask: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> None:
    volume = np.zeros(mask.shape, dtype=np.float32)
    volume[mask] = in_mask
    write_bytes_atomic(path, nifti_gz_bytes(volume, affine))


class _WriteQueue:
    """Map writes running in a thread pool, at most ``max_pending`` queued at once."""

    def __init__(self, pool: ThreadPoolExecutor, max_pending: int) -> None:
        self.pool = pool
        self.max_pending = max_pending
        self.pending: deque[Future] = deque()

    def submit(self, function, *args) -> None:
        while self.pending and self.pending[0].done():
            self.pending.popleft().result()
        if len(self.pending) >= self.max_pending:  # bounded memory: wait for the oldest
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(function, *args))

    def finish(self) -> None:
        while self.pending:
            self.pending.popleft().result()


_QUEUE: _WriteQueue | None = None


@contextmanager
def background_map_writes(
    n_threads: int = 1, max_pending: int = MAX_PENDING_MAPS
) -> Iterator[None]:
    """Inside the block, :func:`write_map` compresses and writes in ``n_threads`` threads.

    At most ``max_pending`` maps wait (as in-mask float32 values) at any time; a further
    one waits for the oldest. Every map is on disk (or its error raised) when the block
    ends; the block is not re-entrant (an inner one queues into the outer one's writer).
    """
    global _QUEUE
    if _QUEUE is not None:
        yield
        return
    with ThreadPoolExecutor(n_threads, thread_name_prefix="bids-glm-write") as pool:
        _QUEUE = _WriteQueue(pool, max_pending)
        try:
            yield
        finally:
            queue, _QUEUE = _QUEUE, None
            queue.finish()


def write_mask(path: Path, mask: np.ndarray, affine: np.ndarray) -> None:
    """Write a boolean mask as uint8 NIfTI."""
    write_bytes_atomic(path, nifti_gz_bytes(mask.astype(np.uint8), affine))


def dataset_links(bids_dir: Path, derivative_dirs: Sequence[Path]) -> dict[str, Path]:
    """Names for the input datasets, used in BIDS URIs (``bids:<name>:<path>``).

    The raw dataset is ``raw``; each derivatives folder is named after its folder
    (letters and digits only, made unique).
    """
    links = {"raw": bids_dir}
    for folder in derivative_dirs:
        base = re.sub(r"[^A-Za-z0-9]", "", folder.name) or "derivatives"
        key, suffix = base, 1
        while key in links or key == "bids":
            suffix += 1
            key = f"{base}{suffix}"
        links[key] = folder
    return links


def bids_uri(path: Path, links: Mapping[str, Path]) -> str:
    """``bids:<dataset>:<relative path>`` for an input file (the innermost dataset wins)."""
    for key, root in sorted(links.items(), key=lambda item: -len(item[1].parts)):
        if root in path.parents:
            return f"bids:{key}:{path.relative_to(root).as_posix()}"
    return path.as_uri()


def _container_type() -> str:
    """``singularity`` under Apptainer/Singularity (which run the Docker image), else docker."""
    apptainer = ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")
    return "singularity" if any(os.environ.get(v) for v in apptainer) else "docker"


def dataset_description(bids_dir: Path, links: Mapping[str, Path]) -> dict:
    """The ``dataset_description.json`` content of the output folder."""
    generated_by = {"Name": "bids-glm", "Version": __version__, "CodeURL": CODE_URL}
    container = os.environ.get(CONTAINER_ENV)
    if container:
        generated_by["Container"] = {"Type": _container_type(), "Tag": container}
    source = {"URL": bids_dir.as_uri()}
    try:
        raw = json.loads((bids_dir / "dataset_description.json").read_text())
    except (OSError, json.JSONDecodeError):
        raw = {}
    if raw.get("DatasetDOI"):
        source = {"DOI": raw["DatasetDOI"]}
    return {
        "Name": f"bids-glm first-level statistics of {raw.get('Name', bids_dir.name)}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
        "SourceDatasets": [source],
        "DatasetLinks": {key: root.as_uri() for key, root in links.items()},
    }


def write_dataset_description(output_dir: Path, bids_dir: Path, links: Mapping[str, Path]) -> None:
    """Write ``dataset_description.json`` and ``.bidsignore`` (atomic, deterministic).

    Concurrent participant processes write identical bytes, and each write is an atomic
    rename, so the folder always holds one complete, consistent copy.
    """
    write_json(output_dir / "dataset_description.json", dataset_description(bids_dir, links))
    write_bytes_atomic(output_dir / "README.md", OUTPUT_README.encode())
    write_bytes_atomic(output_dir / ".bidsignore", "\n".join(BIDS_IGNORED).encode() + b"\n")
