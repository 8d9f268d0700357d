# cython: language_level=3, boundscheck=False, wraparound=False
"""Buffered Python column lists read into Arrow arrays, compiled: the gathering's fast path.

:func:`convert` takes the list of one bronze column and its Arrow type and returns the array
``rows.convert_column`` would return, built straight into Arrow's buffers, or None when the list
holds anything but the plain values the stream buffers (``str``, ``float``, ``int``, ``bool`` of
exactly those types, and None), or when a value would make the Python path do more than copy:
a price's text in exponent notation (written out there), a timestamp out of range, an integer
beyond 64 bits. None means "convert it the usual way", which also raises what it raises.
``tests/ingest/test_compiled.py`` holds the two to the same arrays.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.long cimport PyLong_AsLongLong, PyLong_CheckExact
from cpython.unicode cimport PyUnicode_CheckExact
from libc.math cimport fabs, isfinite, nearbyint
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.string cimport memchr, memcpy

import pyarrow as pa


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL


cdef object STRING = pa.string()
cdef object INT64 = pa.int64()
cdef object BOOL = pa.bool_()
cdef double MAX_MICROS = 9.2e18  # inside int64


def convert(typ, list values, bint decimal):
    """``values`` (one column's buffered list) as an Arrow array of ``typ``, or None: see the
    module doc. ``decimal``: the column holds prices or sizes as text (no exponent allowed)."""
    try:
        if typ == STRING:
            return _strings(values, decimal)
        if typ == INT64:
            return _int64s(INT64, values, False)
        if typ == BOOL:
            return _bools(values)
        if pa.types.is_timestamp(typ) and typ.unit == "us":
            return _int64s(typ, values, True)
    except (UnicodeError, OverflowError):  # (a lone surrogate; an int beyond 64 bits)
        return None
    return None


cdef object _validity(list values, Py_ssize_t n):
    """The validity bitmap of ``values`` (a bit per value, set where it is not None)."""
    bits = bytearray((n + 7) // 8)
    cdef uint8_t* b = <uint8_t*> PyByteArray_AS_STRING(bits)
    cdef Py_ssize_t i
    for i in range(n):
        if values[i] is not None:
            b[i >> 3] |= <uint8_t> (1 << (i & 7))
    return pa.py_buffer(bits)


cdef object _strings(list values, bint decimal):
    cdef Py_ssize_t n = len(values), i, size, total = 0, nulls = 0, pos = 0
    cdef const char* p
    for i in range(n):
        v = values[i]
        if v is None:
            nulls += 1
            continue
        if not PyUnicode_CheckExact(v):
            return None
        p = PyUnicode_AsUTF8AndSize(v, &size)
        if decimal and (memchr(p, c"E", size) != NULL or memchr(p, c"e", size) != NULL):
            return None
        total += size
    if total > 2147483647:
        return None
    offsets = bytearray((n + 1) * 4)
    data = bytearray(total)
    cdef int32_t* off = <int32_t*> PyByteArray_AS_STRING(offsets)
    cdef char* d = PyByteArray_AS_STRING(data)
    off[0] = 0
    for i in range(n):
        v = values[i]
        if v is not None:
            p = PyUnicode_AsUTF8AndSize(v, &size)
            memcpy(d + pos, p, size)
            pos += size
        off[i + 1] = <int32_t> pos
    validity = _validity(values, n) if nulls else None
    return pa.Array.from_buffers(STRING, n, [validity, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=nulls)


cdef object _int64s(typ, list values, bint seconds):
    """An int64-backed column: ``int`` values as they are, or (``seconds``: a timestamp column)
    float epoch seconds as microseconds, rounded half to even (as pyarrow.compute.round)."""
    cdef Py_ssize_t n = len(values), i, nulls = 0
    cdef double x
    out = bytearray(n * 8)
    cdef int64_t* o = <int64_t*> PyByteArray_AS_STRING(out)
    for i in range(n):
        v = values[i]
        if v is None:
            nulls += 1
            o[i] = 0
        elif seconds and PyFloat_CheckExact(v):
            x = nearbyint(PyFloat_AS_DOUBLE(v) * 1000000.0)
            if not isfinite(x) or fabs(x) > MAX_MICROS:
                return None
            o[i] = <int64_t> x
        elif not seconds and PyLong_CheckExact(v):  # (not a bool: True is an int of another type)
            o[i] = PyLong_AsLongLong(v)
        else:
            return None
    validity = _validity(values, n) if nulls else None
    return pa.Array.from_buffers(typ, n, [validity, pa.py_buffer(out)], null_count=nulls)


cdef object _bools(list values):
    cdef Py_ssize_t n = len(values), i, nulls = 0
    bits = bytearray((n + 7) // 8)
    cdef uint8_t* b = <uint8_t*> PyByteArray_AS_STRING(bits)
    for i in range(n):
        v = values[i]
        if v is True:
            b[i >> 3] |= <uint8_t> (1 << (i & 7))
        elif v is None:
            nulls += 1
        elif v is not False:
            return None
    validity = _validity(values, n) if nulls else None
    return pa.Array.from_buffers(BOOL, n, [validity, pa.py_buffer(bits)], null_count=nulls)
