/* Direct access to scaler.series.Series objects from C: see series.h. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>
#include <structmember.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include "series.h"

int series_import_numpy(void) { return _import_array(); }

/* ------------------------------------------------------------------ the layout */

int series_layout_init(SeriesLayout *layout, PyObject *cls, Py_ssize_t initial_capacity, PyObject *no_sample) {
    static const char *const names[] = {"alive", "delta_total", "last", "n", "name", "ts", "vals"};
    Py_ssize_t *offsets[] = {&layout->alive, &layout->delta_total, &layout->last, &layout->n,
                             &layout->name,  &layout->ts,          &layout->vals};
    if (!PyType_Check(cls) || initial_capacity < 1 || !PyLong_Check(no_sample)) {
        PyErr_SetString(PyExc_TypeError, "series layout: a class, an initial capacity >= 1 and an int are required");
        return -1;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        PyObject *descr = PyObject_GetAttrString(cls, names[i]);
        if (!descr) return -1;
        int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type);
        if (ok) {
            PyMemberDescrObject *member = (PyMemberDescrObject *)descr;
            ok = member->d_member->type == T_OBJECT_EX && !(member->d_member->flags & READONLY) &&
                 PyType_IsSubtype((PyTypeObject *)cls, member->d_common.d_type);
            *offsets[i] = member->d_member->offset;
        }
        Py_DECREF(descr);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "series layout: %R.%s is not a writable __slots__ member", cls, names[i]);
            return -1;
        }
    }
    PyObject *append = PyUnicode_InternFromString("append");
    if (!append) return -1;
    Py_XSETREF(layout->append, append);
    Py_XSETREF(layout->type, (PyTypeObject *)Py_NewRef(cls));
    Py_XSETREF(layout->no_sample, Py_NewRef(no_sample));
    layout->initial_capacity = initial_capacity;
    return 0;
}

void series_layout_clear(SeriesLayout *layout) {
    Py_CLEAR(layout->type);
    Py_CLEAR(layout->no_sample);
    Py_CLEAR(layout->append);
}

int series_layout_traverse(SeriesLayout *layout, visitproc visit, void *arg) {
    Py_VISIT(layout->type);
    return 0;
}

int series_check(const SeriesLayout *layout, PyObject *obj) {
    if (layout->type && Py_IS_TYPE(obj, layout->type)) return 0;
    PyErr_Format(PyExc_TypeError, "expected a %s, got %R", layout->type ? layout->type->tp_name : "Series", obj);
    return -1;
}

/* ------------------------------------------------------------------ slots */

/* Store `value` (a new reference, stolen) in a slot, releasing the old one. */
static void slot_set(PyObject *obj, Py_ssize_t offset, PyObject *value) {
    PyObject *old = SERIES_SLOT(obj, offset);
    SERIES_SLOT(obj, offset) = value;
    Py_XDECREF(old);
}

static int slot_int(PyObject *obj, Py_ssize_t offset, long long *out) {
    PyObject *v = SERIES_SLOT(obj, offset);
    if (!v) {
        PyErr_SetString(PyExc_AttributeError, "a Series slot is unset");
        return -1;
    }
    int overflow; /* not PyLong_AsLongLong: it converts through a byte array past 30 bits (a timestamp) */
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "a Series field does not fit in 64 bits");
        return -1;
    }
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int slot_set_int(PyObject *obj, Py_ssize_t offset, long long value) {
    PyObject *v = PyLong_FromLongLong(value);
    if (!v) return -1;
    slot_set(obj, offset, v);
    return 0;
}

/* The array in a slot when it is what Series keeps there (1-d, native, C-contiguous, writable). */
static PyArrayObject *slot_array(PyObject *obj, Py_ssize_t offset, int type) {
    PyObject *a = SERIES_SLOT(obj, offset);
    if (!a || !PyArray_Check(a)) return NULL;
    PyArrayObject *arr = (PyArrayObject *)a;
    if (PyArray_NDIM(arr) != 1 || PyArray_TYPE(arr) != type || !PyArray_ISCARRAY(arr) || !PyArray_ISNOTSWAPPED(arr))
        return NULL;
    return arr;
}

/* ------------------------------------------------------------------ Series.append */

/* Series._resize: new arrays of `capacity` holding the first `n` samples. */
static int resize(const SeriesLayout *layout, PyObject *series, npy_intp capacity, npy_intp n, Py_ssize_t *moved) {
    PyArrayObject *ts = slot_array(series, layout->ts, NPY_INT64);
    PyArrayObject *vals = slot_array(series, layout->vals, NPY_FLOAT64);
    if (!ts || !vals) {
        PyErr_SetString(PyExc_TypeError, "Series arrays changed type during an append");
        return -1;
    }
    PyObject *new_ts = PyArray_SimpleNew(1, &capacity, NPY_INT64);
    PyObject *new_vals = new_ts ? PyArray_SimpleNew(1, &capacity, NPY_FLOAT64) : NULL;
    if (!new_vals) {
        Py_XDECREF(new_ts);
        return -1;
    }
    memcpy(PyArray_DATA((PyArrayObject *)new_ts), PyArray_DATA(ts), (size_t)n * sizeof(int64_t));
    memcpy(PyArray_DATA((PyArrayObject *)new_vals), PyArray_DATA(vals), (size_t)n * sizeof(double));
    slot_set(series, layout->ts, new_ts);
    slot_set(series, layout->vals, new_vals);
    *moved += n + capacity;
    return 0;
}

/* Series.trim: drop the samples older than `cutoff` and shrink a mostly empty buffer.
 * `*n` is the sample count before and after; `*dropped` how many went. */
static int trim(const SeriesLayout *layout, PyObject *series, int64_t cutoff, npy_intp *n, npy_intp *dropped,
                Py_ssize_t *moved) {
    PyArrayObject *ts = slot_array(series, layout->ts, NPY_INT64);
    PyArrayObject *vals = slot_array(series, layout->vals, NPY_FLOAT64);
    int64_t *t = PyArray_DATA(ts);
    npy_intp lo = 0, hi = *n; /* searchsorted(ts[:n], cutoff, side="left") */
    while (lo < hi) {
        npy_intp mid = lo + (hi - lo) / 2;
        if (t[mid] < cutoff) lo = mid + 1;
        else hi = mid;
    }
    *dropped = lo;
    if (!lo) return 0;
    npy_intp keep = *n - lo;
    memmove(t, t + lo, (size_t)keep * sizeof(int64_t));
    double *v = PyArray_DATA(vals);
    memmove(v, v + lo, (size_t)keep * sizeof(double));
    *moved += keep;
    *n = keep;
    if (slot_set_int(series, layout->n, keep) < 0) return -1;
    if (!keep) slot_set(series, layout->last, Py_NewRef(layout->no_sample));
    npy_intp capacity = PyArray_DIM(ts, 0);
    if (capacity > layout->initial_capacity && keep < capacity / 4) {
        npy_intp half = capacity / 2;
        return resize(layout, series, half > layout->initial_capacity ? half : layout->initial_capacity, keep, moved);
    }
    return 0;
}

/* Series._make_room: trim, and double the buffer when that freed nothing. */
static int make_room(const SeriesLayout *layout, PyObject *series, int64_t cutoff, npy_intp *n, Py_ssize_t *moved) {
    npy_intp dropped;
    if (trim(layout, series, cutoff, n, &dropped, moved) < 0) return -1;
    npy_intp capacity = PyArray_DIM((PyArrayObject *)SERIES_SLOT(series, layout->ts), 0);
    if (dropped == 0 || *n == capacity) return resize(layout, series, 2 * capacity, *n, moved);
    return 0;
}

int series_append(const SeriesLayout *layout, PyObject *series, int64_t ts, PyObject *ts_obj, double value,
                  int64_t cutoff, Py_ssize_t *moved) {
    long long n, last;
    if (slot_int(series, layout->n, &n) < 0 || slot_int(series, layout->last, &last) < 0) return -1;
    if (ts > last) {
        PyArrayObject *t = slot_array(series, layout->ts, NPY_INT64);
        PyArrayObject *v = slot_array(series, layout->vals, NPY_FLOAT64);
        if (t && v && PyArray_DIM(t, 0) == PyArray_DIM(v, 0) && n >= 0 && n <= PyArray_DIM(t, 0)) {
            npy_intp count = (npy_intp)n;
            if (count == PyArray_DIM(t, 0)) {
                if (make_room(layout, series, cutoff, &count, moved) < 0) return -1;
                t = (PyArrayObject *)SERIES_SLOT(series, layout->ts);
                v = (PyArrayObject *)SERIES_SLOT(series, layout->vals);
            }
            ((int64_t *)PyArray_DATA(t))[count] = ts;
            ((double *)PyArray_DATA(v))[count] = value;
            if (slot_set_int(series, layout->n, count + 1) < 0) return -1;
            slot_set(series, layout->last, Py_NewRef(ts_obj));
            return 0;
        }
    }
    /* Not newer than the last sample (an insert or an overwrite), or arrays Series would not
     * keep: Series.append itself (an insert moves up to n samples, a full buffer is trimmed). */
    *moved += n > 0 ? (Py_ssize_t)n : 0;
    PyObject *v = PyFloat_FromDouble(value), *c = v ? PyLong_FromLongLong(cutoff) : NULL;
    PyObject *r = c ? PyObject_CallMethodObjArgs(series, layout->append, ts_obj, v, c, NULL) : NULL;
    Py_XDECREF(v);
    Py_XDECREF(c);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

int series_add_delta(const SeriesLayout *layout, PyObject *series, double *value) {
    PyObject *t = SERIES_SLOT(series, layout->delta_total);
    if (!t) {
        PyErr_SetString(PyExc_AttributeError, "a Series slot is unset");
        return -1;
    }
    double total = PyFloat_AsDouble(t);
    if (total == -1.0 && PyErr_Occurred()) return -1;
    total += *value;
    if (!isfinite(total)) return 0; /* a NaN/±Inf delta, or an overflow: poison for good */
    PyObject *f = PyFloat_FromDouble(total);
    if (!f) return -1;
    slot_set(series, layout->delta_total, f);
    *value = total;
    return 1;
}
