"""Fingerprints of an output tree, to compare a run against outputs stored before a change.

Every file is listed by name. NIfTI maps are summarised by their header geometry, sums
(plain, absolute, squared), extremes, NaN count and the values at 40 voxels spread over the
non-zero voxels; TSV files by their columns and, per column, sums and sampled values (the
whole column when short); JSON files are kept whole, with the run's temporary root replaced
by ``<ROOT>`` and values that legitimately change between runs (elapsed times, manifests'
input fingerprints and output byte counts) or were added after the baseline dropped.
:func:`compare` checks numbers to a relative and absolute tolerance of 1e-6.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

N_SAMPLES = 40
TOLERANCE = 1e-6
CONTENT_SUFFIXES = (".nii.gz", ".tsv", ".json")
VOLATILE_KEYS = {"ElapsedSeconds", "Fingerprint"}
# JSON keys added after the baseline was taken (not in it), checked by tests of their own:
# the manifest summary's analysed series and grid (test_end_to_end.py,
# test_methods_text_names_the_analysed_series_and_its_grid)
ADDED_KEYS = {"BoldVariant", "VoxelSizeMM"}


def _floats(values: np.ndarray) -> list:
    return [None if not math.isfinite(v) else float(v) for v in np.asarray(values, float)]


def nifti_fingerprint(path: Path) -> dict:
    image = nib.load(path)
    data = np.asarray(image.dataobj, dtype=np.float64)
    flat = data.ravel(order="F")
    finite = np.isfinite(flat)
    values = np.where(finite, flat, 0.0)
    nonzero = np.flatnonzero(values)
    picks = nonzero[np.linspace(0, nonzero.size - 1, min(N_SAMPLES, nonzero.size)).astype(int)]
    return {
        "shape": list(data.shape),
        "dtype": str(image.get_data_dtype()),
        "affine": _floats(image.affine.ravel()),
        "zooms": _floats(image.header.get_zooms()),
        "n_nan": int(np.isnan(flat).sum()),
        "n_nonzero": int(nonzero.size),
        "sum": float(values.sum()),
        "abs_sum": float(np.abs(values).sum()),
        "square_sum": float((values**2).sum()),
        "min": float(values.min()) if values.size else 0.0,
        "max": float(values.max()) if values.size else 0.0,
        "sample_index": [int(i) for i in picks],
        "sample_value": _floats(values[picks]),
    }


def tsv_fingerprint(path: Path) -> dict:
    table = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["n/a"], dtype=str)
    columns = {}
    for name in table.columns:
        text = table[name]
        numbers = pd.to_numeric(text, errors="coerce")
        if numbers.notna().sum() == text.ne("").sum() and numbers.notna().any():
            values = numbers.to_numpy(float)
            rows = np.arange(values.size)
            if values.size > N_SAMPLES:
                rows = np.linspace(0, values.size - 1, N_SAMPLES).astype(int)
            finite = np.where(np.isfinite(values), values, 0.0)
            columns[name] = {
                "sum": float(finite.sum()),
                "abs_sum": float(np.abs(finite).sum()),
                "rows": [int(r) for r in rows],
                "values": _floats(values[rows]),
            }
        else:
            columns[name] = {"text": text.fillna("n/a").tolist()}
    return {"n_rows": len(table), "columns": list(table.columns), "column_values": columns}


def _normalise_json(value, root: str):
    if isinstance(value, dict):
        return {
            key: _normalise_json(item, root)
            for key, item in value.items()
            if key not in VOLATILE_KEYS | ADDED_KEYS
        }
    if isinstance(value, list):
        return [_normalise_json(item, root) for item in value]
    if isinstance(value, str):
        return value.replace(root, "<ROOT>")
    return value


def json_fingerprint(path: Path, root: Path) -> dict:
    document = json.loads(path.read_text())
    if isinstance(document, dict) and isinstance(document.get("Outputs"), dict):
        document["Outputs"] = sorted(document["Outputs"])  # names only: byte counts vary
    return _normalise_json(document, str(root))


def tree_fingerprint(out_dir: Path, root: Path) -> dict:
    """Fingerprint every file under ``out_dir``; paths in JSON relative to ``root``."""
    files = {}
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        name = path.relative_to(out_dir).as_posix()
        if name.endswith(".nii.gz"):
            files[name] = {"nifti": nifti_fingerprint(path)}
        elif name.endswith(".tsv"):
            files[name] = {"tsv": tsv_fingerprint(path)}
        elif name.endswith(".json"):
            files[name] = {"json": json_fingerprint(path, root)}
        else:
            files[name] = {}
    return files


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def compare(expected, actual, where: str = "") -> list[str]:
    """Differences between two fingerprints (numbers to 1e-6), as readable lines."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        problems = []
        if set(expected) != set(actual):
            missing = sorted(set(expected) - set(actual))
            extra = sorted(set(actual) - set(expected))
            problems.append(f"{where}: missing {missing[:5]}, unexpected {extra[:5]}")
        for key in sorted(set(expected) & set(actual)):
            problems += compare(expected[key], actual[key], f"{where}/{key}")
        return problems
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: length {len(actual)}, expected {len(expected)}"]
        problems = []
        for i, (a, b) in enumerate(zip(expected, actual, strict=True)):
            problems += compare(a, b, f"{where}[{i}]")
        return problems
    numeric = (int, float, type(None))
    both_numbers = isinstance(expected, numeric) and isinstance(actual, numeric)
    if both_numbers and not isinstance(expected, bool) and not isinstance(actual, bool):
        return [] if _close(expected, actual) else [f"{where}: {actual!r}, expected {expected!r}"]
    return [] if expected == actual else [f"{where}: {actual!r}, expected {expected!r}"]
