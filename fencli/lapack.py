"""The BLAS/LAPACK routines of SLRX's block loop, called so that they release the GIL.

SciPy's Python wrappers (``scipy.linalg.blas``/``lapack``) hold the GIL for the whole call, so the
hundreds of 200 x 200 factorizations of SLRX could not share the cores between threads. SciPy also
exports the same routines as C function pointers for Cython (``scipy.linalg.cython_blas`` and
``cython_lapack``); calling those through :mod:`ctypes` releases the GIL around each call. Same
library, same bits as the wrappers. Arrays are passed in place, column-major (a C-ordered array's
``.T``), float64.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

import numpy as np

from fencli.errors import FencliError

_I, _D = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_double)
_C, _P = ctypes.c_char_p, ctypes.c_void_p
_ARGS = {  # Fortran argument lists (everything by reference), as the capsules' signatures state them
    "dsyrk": (_C, _C, _I, _I, _D, _P, _I, _D, _P, _I),
    "dsyr": (_C, _I, _D, _P, _I, _P, _I),
    "dtrsm": (_C, _C, _C, _C, _I, _I, _D, _P, _I, _P, _I),
    "dpotrf": (_C, _I, _P, _I, _I),
    "dtrtri": (_C, _C, _I, _P, _I, _I),
}
_CAPSULE_NAME = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
_CAPSULE_POINTER = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))


@cache
def _routine(name: str) -> Any:
    from scipy.linalg import cython_blas, cython_lapack

    capsule = (cython_lapack if name in ("dpotrf", "dtrtri") else cython_blas).__pyx_capi__[name]
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
    if a.dtype != np.float64 or a.strides[0] != 8:
        raise ValueError("expected a column-major float64 matrix")
    return a.strides[1] // 8 if a.shape[1] > 1 else max(a.shape[0], 1)


def syrk_lower(a: np.ndarray, out: np.ndarray, *, trans: bool = False) -> None:
    """Lower triangle of ``out = a @ a.T`` (``a``: n x k), or of ``a.T @ a`` with ``trans``."""
    n, k = a.shape[::-1] if trans else a.shape
    _routine("dsyrk")(b"L", b"T" if trans else b"N", _i(n), _i(k), _d(1.0), a.ctypes.data, _i(_ld(a)), _d(0.0),
                      out.ctypes.data, _i(_ld(out)))


def syr_lower(alpha: float, x: np.ndarray, a: np.ndarray) -> None:
    """Lower triangle of ``a += alpha x x^T`` (``x`` contiguous)."""
    if x.dtype != np.float64 or x.strides != (8,):
        raise ValueError("expected a contiguous float64 vector")
    _routine("dsyr")(b"L", _i(a.shape[0]), _d(alpha), x.ctypes.data, _i(1), a.ctypes.data, _i(_ld(a)))


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


def trsm_lower(low: np.ndarray, b: np.ndarray) -> None:
    """In place, ``b = L^-1 b`` with the lower triangle ``L`` of ``low``."""
    m, n = b.shape
    _routine("dtrsm")(b"L", b"L", b"N", b"N", _i(m), _i(n), _d(1.0), low.ctypes.data, _i(_ld(low)),
                      b.ctypes.data, _i(_ld(b)))
