"""The LAPACK routines of SLRX's block loop, called so that they release the GIL.

SciPy's Python wrappers (``scipy.linalg.lapack``) hold the GIL for the whole call, so the hundreds
of 200 x 200 factorizations of SLRX could not share the cores between threads. SciPy also exports
the same routines as C function pointers for Cython (``scipy.linalg.cython_lapack``); calling those
through :mod:`ctypes` releases the GIL around each call. Same library, same bits as the wrappers.
Arrays are passed in place, column-major (a C-ordered array's ``.T``), float64; the symmetric
matrices that SLRX sums in bulk are in LAPACK's packed RFP form (below).
"""

from __future__ import annotations

import ctypes
import math
from functools import cache
from typing import Any

import numpy as np

from fencli.errors import FencliError

_I, _D = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_double)
_C, _P = ctypes.c_char_p, ctypes.c_void_p
_ARGS = {  # Fortran argument lists (everything by reference), as the capsules' signatures state them
    "dpotrf": (_C, _I, _P, _I, _I),
    "dtrtri": (_C, _C, _I, _P, _I, _I),
    "dsfrk": (_C, _C, _C, _I, _I, _D, _P, _I, _D, _P),
    "dpftrf": (_C, _C, _I, _P, _I),
    "dtfsm": (_C, _C, _C, _C, _C, _I, _I, _D, _P, _P, _I),
}
_CAPSULE_NAME = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
_CAPSULE_POINTER = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))


@cache
def _routine(name: str) -> Any:
    from scipy.linalg import cython_lapack

    capsule = cython_lapack.__pyx_capi__[name]
    signature = _CAPSULE_NAME(capsule)  # the C signature, e.g. b"void (char *, int *, ...)"
    args = _ARGS[name]  # every argument a pointer; an ILP64 build would say "int64_t *"
    if signature.count(b"*") != len(args) or signature.count(b"int *") != sum(a is _I for a in args):
        raise FencliError(f"SciPy's {name} has a signature SLRX cannot call: {signature.decode()}")
    return ctypes.CFUNCTYPE(None, *args)(_CAPSULE_POINTER(capsule, signature))


def _i(v: int) -> Any:
    return ctypes.byref(ctypes.c_int(v))


def _d(v: float) -> Any:
    return ctypes.byref(ctypes.c_double(v))


def _ld(a: np.ndarray) -> int:
    """Leading dimension of a column-major matrix view (its column stride in elements)."""
    m, n = a.shape
    if a.dtype != np.float64 or (m > 1 and a.strides[0] != 8):  # a single row's row stride is moot
        raise ValueError("expected a column-major float64 matrix")
    return a.strides[1] // 8 if n > 1 else max(m, 1)


def potrf_lower(a: np.ndarray) -> int:
    """In-place Cholesky ``a = L L^T`` of the lower triangle; LAPACK's ``info`` (0: success)."""
    info = ctypes.c_int(0)
    _routine("dpotrf")(b"L", _i(a.shape[0]), a.ctypes.data, _i(_ld(a)), ctypes.byref(info))
    return info.value


def trtri_lower(a: np.ndarray) -> int:
    """In place, the lower triangle of ``a`` becomes its inverse; LAPACK's ``info`` (0: success)."""
    info = ctypes.c_int(0)
    _routine("dtrtri")(b"L", b"N", _i(a.shape[0]), a.ctypes.data, _i(_ld(a)), ctypes.byref(info))
    return info.value


# Rectangular full packed (RFP) storage, LAPACK's TRANSR="N", UPLO="L": one triangle of an n x n
# matrix in n(n+1)/2 contiguous doubles, still at level-3 speed (LAPACK splits it into two triangles
# and a rectangle). SLRX keeps its block moments so: half the bytes of full matrices to sum.

def rfp_size(n: int) -> int:
    return n * (n + 1) // 2


def _rfp_order(a: np.ndarray) -> int:
    """n of the RFP array ``a`` (checked: contiguous float64 of n(n+1)/2 entries)."""
    n = (math.isqrt(8 * a.size + 1) - 1) // 2
    if a.dtype != np.float64 or a.ndim != 1 or a.strides != (8,) or rfp_size(n) != a.size:
        raise ValueError("expected a contiguous float64 RFP array")
    return n


@cache
def rfp_diagonal(n: int) -> np.ndarray:
    """Positions of the diagonal's n entries, in order, in an RFP array."""
    from scipy.linalg.lapack import dtrttf

    rfp, _ = dtrttf(np.diag(np.arange(1.0, n + 1)), transr="N", uplo="L")
    at = np.flatnonzero(rfp)
    return at[np.argsort(rfp[at])]


def sfrk_lower(alpha: float, a: np.ndarray, beta: float, out: np.ndarray) -> None:
    """RFP ``out = alpha a a^T + beta out`` (``a``: n x k, column-major)."""
    n, k = a.shape
    if _rfp_order(out) != n:
        raise ValueError(f"expected an RFP array of order {n}")
    _routine("dsfrk")(b"N", b"L", b"N", _i(n), _i(k), _d(alpha), a.ctypes.data, _i(_ld(a)), _d(beta),
                      out.ctypes.data)


def pftrf_lower(a: np.ndarray) -> int:
    """In-place Cholesky ``a = L L^T`` of the RFP matrix ``a``; LAPACK's ``info`` (0: success)."""
    info = ctypes.c_int(0)
    _routine("dpftrf")(b"N", b"L", _i(_rfp_order(a)), a.ctypes.data, ctypes.byref(info))
    return info.value


def tfsm_rows(low: np.ndarray, b: np.ndarray) -> None:
    """In place, each row ``x`` of ``b`` (m x n, column-major) becomes ``L^-1 x``, with ``L`` the RFP
    factor ``low``: ``b = b L^-T``, measured 1.4x faster than the left-side solve of the columns."""
    m, n = b.shape
    if _rfp_order(low) != n:
        raise ValueError(f"expected an RFP factor of order {n}")
    _routine("dtfsm")(b"N", b"R", b"L", b"T", b"N", _i(m), _i(n), _d(1.0), low.ctypes.data, b.ctypes.data,
                      _i(_ld(b)))
