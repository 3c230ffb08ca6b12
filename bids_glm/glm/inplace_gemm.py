"""``out += left @ right`` in place by BLAS, with the GIL released, for threads that share it.

numpy's ``matmul`` cannot accumulate (it overwrites ``out``), and ``scipy.linalg.blas.dgemm``
(f2py) holds the GIL for the whole product and copies any ``c`` that is not
Fortran-contiguous. The ``dgemm`` that `scipy.linalg.cython_blas` exports for Cython, called
through ``ctypes``, does neither: reading threads go on while sums accumulate
(`bids_glm.glm.cross_products`). Its integer size is checked when this module loads.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import numpy as np
import scipy.linalg.cython_blas

_DGEMM_SIGNATURE = b"void (char *, char *, int *, int *, int *,"  # LP64: C ints


def _cython_blas_dgemm() -> Callable[..., None]:
    """scipy's BLAS ``dgemm`` (Fortran convention, LP64 ints), callable without the GIL.

    ``scipy.linalg.blas.dgemm`` (f2py) holds the GIL for the whole product and copies any
    ``c`` that is not Fortran-contiguous; the function pointer that `scipy.linalg.cython_blas`
    exports for Cython, called through ``ctypes``, does neither.
    """
    capsule = scipy.linalg.cython_blas.__pyx_capi__["dgemm"]
    capsule_api = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)
    signature = capsule_api(("PyCapsule_GetName", ctypes.pythonapi))(capsule)
    if not signature.startswith(_DGEMM_SIGNATURE):  # the int size must be the one we pass
        raise ImportError(f"unexpected scipy.linalg.cython_blas dgemm: {signature!r}")
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)
    address = get_pointer(("PyCapsule_GetPointer", ctypes.pythonapi))(capsule, signature)
    integer, pointer = ctypes.POINTER(ctypes.c_int), ctypes.c_void_p
    # transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc (all by reference)
    arguments = [ctypes.c_char_p] * 2 + [integer] * 3 + [pointer, pointer, integer]
    arguments += [pointer, integer, pointer, pointer, integer]
    prototype = ctypes.CFUNCTYPE(None, *arguments)  # its calls release the GIL
    return prototype(address)


_DGEMM = _cython_blas_dgemm()
_ONE = ctypes.c_double(1.0)


def add_product(out: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
    """``out += left @ right`` in place, by BLAS ``dgemm`` with ``beta = 1`` (GIL released).

    Parameters
    ----------
    out : ndarray, shape (r, w), float64
        Updated in place; any row stride (e.g. a column slice of a wider array).
    left : ndarray, shape (r, k), float64
    right : ndarray, shape (k, w), float64
        Each array's rows must be contiguous (unit column stride), rows not overlapping;
        ``out`` must not share memory with ``left`` or ``right``.
    """
    arrays = (out, left, right)
    if any(a.dtype != np.float64 or a.ndim != 2 or a.strides[1] != 8 for a in arrays):
        raise ValueError("add_product needs 2-D float64 arrays with contiguous rows")
    inner_mismatch = left.shape[1] != right.shape[0]
    if inner_mismatch or not out.flags.writeable or out.shape != (left.shape[0], right.shape[1]):
        raise ValueError(f"cannot add {left.shape} @ {right.shape} to {out.shape}")
    if out.size == 0 or left.shape[1] == 0:
        return
    # row-major out = left @ right is column-major out^T = right^T @ left^T
    leading = [ctypes.c_int(_leading_dimension(a)) for a in arrays]
    sizes = [ctypes.c_int(n) for n in (right.shape[1], left.shape[0], left.shape[1])]
    _DGEMM(
        b"N", b"N", *map(ctypes.byref, sizes), ctypes.byref(_ONE),
        right.ctypes.data, ctypes.byref(leading[2]),
        left.ctypes.data, ctypes.byref(leading[1]),
        ctypes.byref(_ONE), out.ctypes.data, ctypes.byref(leading[0]),
    )  # fmt: skip


def _leading_dimension(array: np.ndarray) -> int:
    """The row stride of ``array`` in elements, as BLAS's column-major leading dimension."""
    if not array.flags.aligned or array.strides[0] < 8 * array.shape[1] * (array.shape[0] > 1):
        raise ValueError(f"rows of strides {array.strides} overlap or are misaligned")
    return max(array.strides[0] // 8, array.shape[1], 1)
