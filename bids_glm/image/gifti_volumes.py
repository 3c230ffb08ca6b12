"""A GIfTI time series decoded one volume at a time, so that a run need not be held.

fMRIPrep writes a surface run as one ``DataArray`` per volume, its values inline (base64,
usually deflated). nibabel decodes a file whole; :func:`gifti_volumes` parses the XML
incrementally and yields each volume's values as soon as its element ends, dropping the
element, so memory stays that of one volume whatever the run's length. Files it cannot
read that way (data in external files, or one 2-D array) are read whole
(:func:`bids_glm.image.surface.read_surface_series`): :func:`streamable` tells which.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
from nibabel.gifti.util import gifti_endian_codes
from nibabel.nifti1 import data_type_codes

from bids_glm.errors import InputError

try:  # ISA-L inflates GIfTI's deflated arrays ~2.2x faster than zlib (same bytes out)
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a declared dependency
    import zlib as _zlib

INLINE_ENCODINGS = ("ASCII", "Base64Binary", "GZipBase64Binary")
# blocks decoded ahead of their use, in a thread of their own (`runtime.threads.read_ahead`):
# inflation releases the GIL, so decoding overlaps with smoothing and summing
DECODED_AHEAD = 2


def streamable(path: Path) -> bool:
    """Whether the file's first ``DataArray`` is one volume, its values inline.

    Only the XML up to the end of that element is parsed.
    """
    try:
        for _, element in ElementTree.iterparse(str(path), events=("end",)):
            if element.tag == "DataArray":
                one_volume = element.get("Dimensionality", "1") == "1"
                return one_volume and element.get("Encoding") in INLINE_ENCODINGS
    except (ElementTree.ParseError, OSError):
        return False  # the whole-file reader names the problem
    return False


def gifti_volumes(path: Path) -> Iterator[np.ndarray]:
    """Each ``DataArray`` of a GIfTI file, decoded, in file order (1-D arrays).

    Raises
    ------
    InputError
        Unreadable XML, an encoding or data type it cannot decode, or values that do not
        match the element's length (names the file and the array's position).
    """
    root = None
    index = 0
    try:
        for event, element in ElementTree.iterparse(str(path), events=("start", "end")):
            if root is None:
                root = element
            if event == "end" and element.tag == "DataArray":
                yield _decoded(element, path, index)
                index += 1
                root.clear()  # the decoded volumes' elements and text
    except ElementTree.ParseError as err:
        raise InputError(f"{path}: not a readable GIfTI file ({err})") from None


def _decoded(element: ElementTree.Element, path: Path, index: int) -> np.ndarray:
    """One ``DataArray``'s values (a 1-D array of its own dtype)."""
    where = f"{path}: data array {index + 1}"
    encoding = element.get("Encoding")
    if element.get("Dimensionality", "1") != "1" or encoding not in INLINE_ENCODINGS:
        raise InputError(f"{where}: expected one volume of inline values, found {encoding}")
    try:
        dtype = data_type_codes.dtype[element.get("DataType")]
        dtype = dtype.newbyteorder(gifti_endian_codes.byteorder[element.get("Endian")])
    except KeyError:
        raise InputError(
            f"{where}: unknown DataType {element.get('DataType')!r} or Endian "
            f"{element.get('Endian')!r}"
        ) from None
    data = element.find("Data")
    text = "" if data is None or data.text is None else data.text
    try:
        if encoding == "ASCII":
            values = np.array(text.split(), dtype=dtype)
        else:
            raw = base64.b64decode(text)
            if encoding == "GZipBase64Binary":
                raw = _zlib.decompress(raw)
            values = np.frombuffer(raw, dtype=dtype)
    except (binascii.Error, _zlib.error, ValueError) as err:
        raise InputError(f"{where}: its {encoding} values cannot be decoded ({err})") from None
    expected = int(element.get("Dim0", -1))
    if values.size != expected:
        raise InputError(f"{where}: {values.size} values, but Dim0 says {expected}")
    return values


def surface_volume_blocks(
    paths: tuple[Path, Path],
    n_vertices: tuple[int, int],
    analysed: np.ndarray,
    keep_volumes: np.ndarray,
    block_volumes: int,
) -> Iterator[np.ndarray]:
    """Both hemispheres' kept volumes in time order, ``block_volumes`` at a time.

    Each block is a new (b, V) float32 array: the left hemisphere's analysed vertices,
    then the right's (``analysed`` covers both, as ``SurfaceGeometry.mask``).

    Raises
    ------
    InputError
        A hemisphere of another vertex count, hemispheres of different lengths, or a run
        whose length is not the model's (``keep_volumes``).
    """
    taken = np.split(analysed, [n_vertices[0]])
    n_left = int(np.count_nonzero(taken[0]))
    block_shape = (block_volumes, int(np.count_nonzero(analysed)))
    block = np.empty(block_shape, dtype=np.float32)
    row, n_read = 0, 0
    volumes = zip_longest(gifti_volumes(paths[0]), gifti_volumes(paths[1]))
    for left_values, right_values in volumes:
        for path, values, expected in zip(
            paths, (left_values, right_values), n_vertices, strict=True
        ):
            if values is None:
                raise InputError(f"{path}: fewer volumes than the other hemisphere's")
            if values.size != expected:
                raise InputError(f"{path}: {values.size} vertices, expected {expected}")
        if n_read >= keep_volumes.size:
            raise InputError(f"{paths[0]}: more volumes than the model's {keep_volumes.size}")
        if keep_volumes[n_read]:
            block[row, :n_left] = left_values[taken[0]]
            block[row, n_left:] = right_values[taken[1]]
            row += 1
        n_read += 1
        if row == block_volumes:
            yield block
            block, row = np.empty(block_shape, dtype=np.float32), 0
    if n_read != keep_volumes.size:
        raise InputError(
            f"{paths[0]}: {n_read} volumes, but the model describes {keep_volumes.size}"
        )
    if row:
        yield block[:row]
