/* Range-selector windows of many series read in one call (scaler.query.selection).
 *
 * gather(series, lo, hi) reads, for each scaler.series.Series of the list, its samples with
 * lo < ts <= hi (two binary searches over ts[:n]) and copies them back to back into new arrays:
 * (rows, offs, ts, vals) where rows are the indices of the series whose window is not empty and
 * series rows[i] owns ts[offs[i]:offs[i+1]]. The Python equivalent (Series.window per series,
 * then numpy.concatenate) costs ~2 us a series; this is a few tens of nanoseconds plus the copy.
 *
 * rate(series, first, stop, lo, hi, kind, range_seconds) is rate / increase / delta over the
 * windows of series[first:stop]
 * without copying them: per series one pass over its window (staleness markers skipped) gives
 * the value of Prometheus' extrapolatedRate, float operation for float operation.
 *
 * latest(series, first, stop, lo, hi) is what an instant selector sees of series[first:stop]: the
 * newest sample in the lookback window lo < ts <= hi, unless it is a staleness marker.
 *
 * group_sums(values, groups, ngroups) (groupsum.c) is PromQL's sum per group.
 *
 * Read only: the store is not touched, and no Python code runs during a call. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <structmember.h>

#include "groupsum.h"

static PyObject *name_n, *name_ts, *name_vals;

/* Where the type of the series last gathered keeps its n, ts and vals slots: read directly, the
 * next series' objects and arrays can be prefetched while this one is read (the loop is bound by
 * cache misses: ~5 objects a series, scattered over the heap). Other types go through getattr. */
static struct {
    PyTypeObject *type;
    Py_ssize_t n, ts, vals;
} layout;

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static int slot_offset(PyTypeObject *tp, PyObject *name, Py_ssize_t *offset) {
    PyObject *descr = PyObject_GetAttr((PyObject *)tp, name);
    if (!descr) {
        PyErr_Clear();
        return 0;
    }
    int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
             ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX &&
             PyType_IsSubtype(tp, ((PyMemberDescrObject *)descr)->d_common.d_type);
    if (ok) *offset = ((PyMemberDescrObject *)descr)->d_member->offset;
    Py_DECREF(descr);
    return ok;
}

/* 1 if the slots of ``tp`` can be read directly (layout filled), else 0. */
static int layout_for(PyTypeObject *tp) {
    if (layout.type == tp) return 1;
    Py_ssize_t n, ts, vals;
    if (!slot_offset(tp, name_n, &n) || !slot_offset(tp, name_ts, &ts) || !slot_offset(tp, name_vals, &vals)) return 0;
    Py_INCREF(tp);
    Py_XSETREF(layout.type, tp);
    layout.n = n;
    layout.ts = ts;
    layout.vals = vals;
    return 1;
}

static void prefetch_objects(PyObject *series) {
    if (Py_TYPE(series) != layout.type) return;
    PyObject *ts = SLOT(series, layout.ts), *vals = SLOT(series, layout.vals), *n = SLOT(series, layout.n);
    if (ts) __builtin_prefetch(ts);
    if (vals) __builtin_prefetch(vals);
    if (n) __builtin_prefetch(n);
}

static void prefetch_data(PyObject *series) {
    if (Py_TYPE(series) != layout.type) return;
    PyObject *ts = SLOT(series, layout.ts), *vals = SLOT(series, layout.vals), *n_obj = SLOT(series, layout.n);
    if (!ts || !vals || !n_obj || !PyArray_Check(ts) || !PyArray_Check(vals) || !PyLong_CheckExact(n_obj)) return;
    Py_ssize_t n = PyLong_AsSsize_t(n_obj);
    if (n <= 0) {
        PyErr_Clear();
        return;
    }
    const char *t = PyArray_DATA((PyArrayObject *)ts), *v = PyArray_DATA((PyArrayObject *)vals);
    __builtin_prefetch(PyArray_DIMS((PyArrayObject *)ts)); /* a separate block: read by the size check */
    __builtin_prefetch(PyArray_DIMS((PyArrayObject *)vals));
    __builtin_prefetch(t + (n - 1) * 8);  /* the newest samples: a window ends there */
    __builtin_prefetch(t + (n / 2) * 8);
    __builtin_prefetch(v + (n - 1) * 8);
    __builtin_prefetch(v + (n / 2) * 8);
}

/* Series are read in list order: their objects, then their arrays' newest samples, are asked for
 * a few series ahead, so that the cache misses of several series overlap. */
static void prefetch_ahead(PyObject *list, Py_ssize_t i, Py_ssize_t count) {
    if (i + 8 < count) __builtin_prefetch(PyList_GET_ITEM(list, i + 8));
    if (i + 4 < count) prefetch_objects(PyList_GET_ITEM(list, i + 4));
    if (i + 2 < count) prefetch_data(PyList_GET_ITEM(list, i + 2));
}

static Py_ssize_t upper_bound(const int64_t *ts, Py_ssize_t n, int64_t x) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (ts[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static PyObject *get(PyObject *series, PyObject *name, Py_ssize_t offset) {
    if (Py_TYPE(series) == layout.type) {
        PyObject *obj = SLOT(series, offset);
        if (obj) return Py_NewRef(obj);
    }
    return PyObject_GetAttr(series, name); /* also raises the AttributeError of an unset slot */
}

static PyArrayObject *column(PyObject *series, PyObject *name, Py_ssize_t offset, int type, Py_ssize_t n) {
    PyObject *obj = get(series, name, offset);
    if (!obj) return NULL;
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != type || PyArray_NDIM((PyArrayObject *)obj) != 1 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)obj) || PyArray_DIM((PyArrayObject *)obj, 0) < n) {
        PyErr_Format(PyExc_TypeError, "gather: %R.%U is not a contiguous 1-d array of the right type and size", series,
                     name);
        Py_DECREF(obj);
        return NULL;
    }
    return (PyArrayObject *)obj;
}

/* Growing output: the samples copied right after their window is found, while they are hot. */
typedef struct {
    int64_t *ts, *rows, *offs;
    double *vals;
    Py_ssize_t len, cap, nrows;
} Out;

static int out_room(Out *out, Py_ssize_t more) {
    if (out->len + more <= out->cap) return 0;
    Py_ssize_t cap = out->cap ? out->cap : 1024;
    while (cap < out->len + more) cap *= 2;
    int64_t *ts = PyMem_Realloc(out->ts, (size_t)cap * sizeof(int64_t));
    if (!ts) return -1;
    out->ts = ts;
    double *vals = PyMem_Realloc(out->vals, (size_t)cap * sizeof(double));
    if (!vals) return -1;
    out->vals = vals;
    out->cap = cap;
    return 0;
}

/* The window lo < ts <= hi of one series: its bounds and the arrays holding it. */
typedef struct {
    PyArrayObject *ts, *vals; /* new references while the window is held, else NULL */
    const int64_t *t;
    const double *v;
    Py_ssize_t start, end;
} Window;

static void window_release(Window *w) {
    Py_CLEAR(w->ts);
    Py_CLEAR(w->vals);
}

/* 1: ``w`` holds a non-empty window (release it after use); 0: the window is empty; -1: error. */
static int window_find(PyObject *series, int64_t lo, int64_t hi, Window *w) {
    w->ts = w->vals = NULL;
    PyObject *n_obj = get(series, name_n, layout.n);
    if (!n_obj) return -1;
    Py_ssize_t n = PyLong_AsSsize_t(n_obj);
    Py_DECREF(n_obj);
    if (n < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "gather: a series has a negative sample count");
        return -1;
    }
    if (n == 0) return 0;
    w->ts = column(series, name_ts, layout.ts, NPY_INT64, n);
    if (!w->ts) return -1;
    w->t = (const int64_t *)PyArray_DATA(w->ts);
    w->end = w->t[n - 1] <= hi ? n : upper_bound(w->t, n, hi);
    w->start = upper_bound(w->t, w->end, lo);
    if (w->start >= w->end) {
        window_release(w);
        return 0;
    }
    w->vals = column(series, name_vals, layout.vals, NPY_FLOAT64, n);
    if (!w->vals) {
        window_release(w);
        return -1;
    }
    w->v = (const double *)PyArray_DATA(w->vals);
    return 1;
}

/* Copy the window of one series into ``out``; 0 on success. */
static int copy_window(PyObject *series, Py_ssize_t row, int64_t lo, int64_t hi, Out *out) {
    Window w;
    int found = window_find(series, lo, hi, &w);
    if (found <= 0) return found;
    Py_ssize_t len = w.end - w.start;
    int failed = out_room(out, len) < 0;
    if (!failed) {
        memcpy(out->ts + out->len, w.t + w.start, (size_t)len * sizeof(int64_t));
        memcpy(out->vals + out->len, w.v + w.start, (size_t)len * sizeof(double));
        out->len += len;
        out->rows[out->nrows++] = (int64_t)row;
        out->offs[out->nrows] = (int64_t)out->len;
    } else {
        PyErr_NoMemory();
    }
    window_release(&w);
    return failed ? -1 : 0;
}

static PyObject *array_of(const void *data, Py_ssize_t n, int type, size_t item) {
    npy_intp dims[1] = {(npy_intp)n};
    PyObject *array = PyArray_SimpleNew(1, dims, type);
    if (array && n) memcpy(PyArray_DATA((PyArrayObject *)array), data, (size_t)n * item);
    return array;
}

static PyObject *gather(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *list;
    long long lo, hi;
    if (!PyArg_ParseTuple(args, "O!LL", &PyList_Type, &list, &lo, &hi)) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(list);
    Out out = {0};
    PyObject *result = NULL, *rows = NULL, *offs = NULL, *ts = NULL, *vals = NULL;
    out.rows = PyMem_Malloc((size_t)(count + 1) * sizeof(int64_t));
    out.offs = PyMem_Malloc((size_t)(count + 1) * sizeof(int64_t));
    if (!out.rows || !out.offs) {
        PyErr_NoMemory();
        goto done;
    }
    out.offs[0] = 0;
    if (count) layout_for(Py_TYPE(PyList_GET_ITEM(list, 0)));
    for (Py_ssize_t i = 0; i < count; i++) {
        prefetch_ahead(list, i, count);
        if (copy_window(PyList_GET_ITEM(list, i), i, (int64_t)lo, (int64_t)hi, &out) < 0) goto done;
    }
    rows = array_of(out.rows, out.nrows, NPY_INT64, sizeof(int64_t));
    offs = array_of(out.offs, out.nrows + 1, NPY_INT64, sizeof(int64_t));
    ts = array_of(out.ts, out.len, NPY_INT64, sizeof(int64_t));
    vals = array_of(out.vals, out.len, NPY_FLOAT64, sizeof(double));
    if (rows && offs && ts && vals) result = PyTuple_Pack(4, rows, offs, ts, vals);
done:
    PyMem_Free(out.ts);
    PyMem_Free(out.vals);
    PyMem_Free(out.rows);
    PyMem_Free(out.offs);
    Py_XDECREF(rows);
    Py_XDECREF(offs);
    Py_XDECREF(ts);
    Py_XDECREF(vals);
    return result;
}

#define STALE_NAN_BITS 0x7FF0000000000002ULL

static int is_stale(double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits == STALE_NAN_BITS;
}

enum { DELTA, INCREASE, RATE };

/* Prometheus' extrapolatedRate over one window (staleness markers skipped); 1 with ``*value``
 * set, 0 for fewer than two samples. ``*samples`` counts the samples read. The operations and
 * their order are Prometheus' (and scaler.query.rangefuncs'), so the bits are the same. */
static int rate_window(const Window *w, int64_t lo, int64_t hi, int kind, double range_s, double *value,
                       Py_ssize_t *samples) {
    Py_ssize_t count = 0, first = 0, last = 0;
    int dropped = 0;
    double prev = 0.0;
    for (Py_ssize_t i = w->start; i < w->end; i++) {
        double v = w->v[i];
        if (is_stale(v)) continue;
        if (count == 0)
            first = i;
        else if (v < prev)
            dropped = 1;
        last = i;
        prev = v;
        count++;
    }
    *samples += count;
    if (count < 2) return 0;
    int counter = kind != DELTA;
    double first_v = w->v[first], result = w->v[last] - first_v;
    if (counter && dropped) { /* each drop adds the value before it, in order */
        prev = first_v;
        for (Py_ssize_t i = first + 1; i <= last; i++) {
            double v = w->v[i];
            if (is_stale(v)) continue;
            if (v < prev) result += prev;
            prev = v;
        }
    }
    int64_t first_t = w->t[first], last_t = w->t[last];
    double to_start = (double)(first_t - lo) / 1000;
    double to_end = (double)(hi - last_t) / 1000;
    double sampled = (double)(last_t - first_t) / 1000;
    double average = sampled / (double)(count - 1);
    double threshold = average * 1.1;
    if (to_start >= threshold) to_start = average / 2;
    if (counter) {
        double to_zero = result > 0 && first_v >= 0 ? sampled * (first_v / result) : to_start;
        if (to_zero < to_start) to_start = to_zero;
    }
    if (to_end >= threshold) to_end = average / 2;
    double factor = (sampled + to_start + to_end) / sampled;
    if (kind == RATE) factor = factor / range_s;
    *value = result * factor;
    return 1;
}

/* Clamp ``*stop`` to the list's length and require 0 <= first <= stop (else ValueError naming
 * ``who``): the span series[first:stop] without slicing the list, which would touch every series
 * (its refcount) before the loop over them gets to prefetch them. */
static int span_of(PyObject *list, Py_ssize_t first, Py_ssize_t *stop, const char *who) {
    Py_ssize_t count = PyList_GET_SIZE(list);
    if (*stop > count) *stop = count;
    if (first < 0 || first > *stop) {
        PyErr_Format(PyExc_ValueError, "%s: 0 <= first <= stop is required", who);
        return -1;
    }
    return 0;
}

/* Keep the first ``n`` items of each of ``count`` arrays, in place (no copy). */
static int shrink(PyArrayObject **arrays, int count, Py_ssize_t n) {
    npy_intp dims[1] = {(npy_intp)n};
    PyArray_Dims shape = {dims, 1};
    for (int k = 0; k < count; k++) {
        PyObject *r = PyArray_Resize(arrays[k], &shape, 0, NPY_CORDER);
        if (!r) return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* Calls ``visit`` with the window lo < ts <= hi of each series of series[first:stop] whose window
 * is not empty, and the series' index (the window is released after the call); -1 on error. */
typedef void (*Visit)(const Window *w, Py_ssize_t row, void *state);

static int each_window(PyObject *list, Py_ssize_t first, Py_ssize_t stop, int64_t lo, int64_t hi, Visit visit,
                       void *state) {
    if (first < stop) layout_for(Py_TYPE(PyList_GET_ITEM(list, first)));
    for (Py_ssize_t i = first; i < stop; i++) {
        prefetch_ahead(list, i, stop);
        Window w;
        int found = window_find(PyList_GET_ITEM(list, i), lo, hi, &w);
        if (found < 0) return -1;
        if (!found) continue;
        visit(&w, i, state);
        window_release(&w);
    }
    return 0;
}

typedef struct {
    int64_t lo, hi;
    int kind;
    double range_s;
    int64_t *rows;
    double *values;
    Py_ssize_t n, samples;
} RateState;

static void rate_visit(const Window *w, Py_ssize_t row, void *state) {
    RateState *s = state;
    if (rate_window(w, s->lo, s->hi, s->kind, s->range_s, s->values + s->n, &s->samples)) s->rows[s->n++] = row;
}

typedef struct {
    int64_t *rows, *times;
    double *values;
    Py_ssize_t n;
} LatestState;

/* The window's newest sample, unless it is a staleness marker. */
static void latest_visit(const Window *w, Py_ssize_t row, void *state) {
    LatestState *s = state;
    double v = w->v[w->end - 1];
    if (is_stale(v)) return;
    s->rows[s->n] = row;
    s->times[s->n] = w->t[w->end - 1];
    s->values[s->n++] = v;
}

static PyObject *rate(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *list;
    Py_ssize_t first, stop;
    long long lo, hi;
    int kind;
    double range_s;
    if (!PyArg_ParseTuple(args, "O!nnLLid", &PyList_Type, &list, &first, &stop, &lo, &hi, &kind, &range_s))
        return NULL;
    if (kind < DELTA || kind > RATE) {
        PyErr_SetString(PyExc_ValueError, "rate: kind is 0 (delta), 1 (increase) or 2 (rate)");
        return NULL;
    }
    if (span_of(list, first, &stop, "rate") < 0) return NULL;
    npy_intp dims[1] = {(npy_intp)(stop - first)};
    PyArrayObject *rows = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_INT64);
    PyArrayObject *values = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_FLOAT64);
    if (!rows || !values) goto fail;
    RateState state = {(int64_t)lo, (int64_t)hi, kind, range_s, PyArray_DATA(rows), PyArray_DATA(values), 0, 0};
    if (each_window(list, first, stop, (int64_t)lo, (int64_t)hi, rate_visit, &state) < 0) goto fail;
    PyArrayObject *arrays[2] = {rows, values};
    if (shrink(arrays, 2, state.n) < 0) goto fail;
    return Py_BuildValue("NNn", rows, values, state.samples);
fail:
    Py_XDECREF(rows);
    Py_XDECREF(values);
    return NULL;
}

/* latest(series, first, stop, lo, hi) -> (rows, ts, vals): per series of series[first:stop], the
 * sample an instant selector sees, its newest with lo < ts <= hi unless that is a staleness
 * marker; ``rows`` are indices into ``series``. */
static PyObject *latest(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *list;
    Py_ssize_t first, stop;
    long long lo, hi;
    if (!PyArg_ParseTuple(args, "O!nnLL", &PyList_Type, &list, &first, &stop, &lo, &hi)) return NULL;
    if (span_of(list, first, &stop, "latest") < 0) return NULL;
    npy_intp dims[1] = {(npy_intp)(stop - first)};
    PyArrayObject *rows = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_INT64);
    PyArrayObject *times = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_INT64);
    PyArrayObject *values = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_FLOAT64);
    if (!rows || !times || !values) goto fail;
    LatestState state = {PyArray_DATA(rows), PyArray_DATA(times), PyArray_DATA(values), 0};
    if (each_window(list, first, stop, (int64_t)lo, (int64_t)hi, latest_visit, &state) < 0) goto fail;
    PyArrayObject *arrays[3] = {rows, times, values};
    if (shrink(arrays, 3, state.n) < 0) goto fail;
    return Py_BuildValue("NNN", rows, times, values);
fail:
    Py_XDECREF(rows);
    Py_XDECREF(times);
    Py_XDECREF(values);
    return NULL;
}

static PyMethodDef methods[] = {
    {"gather", gather, METH_VARARGS,
     "gather(series, lo, hi) -> (rows, offs, ts, vals): the samples lo < ts <= hi of each series, back to back"},
    {"rate", rate, METH_VARARGS,
     "rate(series, first, stop, lo, hi, kind, range_seconds) -> (rows, values, samples): delta (kind 0), increase (1) "
     "or rate (2) of each series of series[first:stop] with two samples or more in lo < ts <= hi"},
    {"latest", latest, METH_VARARGS,
     "latest(series, first, stop, lo, hi) -> (rows, ts, vals): the newest sample lo < ts <= hi of each series of "
     "series[first:stop] that is not a staleness marker"},
    {"group_sums", group_sums, METH_VARARGS,
     "group_sums(values, groups, ngroups) -> (order, sums): PromQL's sum of each group, in order of first member"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "gather", NULL, -1, methods};

PyMODINIT_FUNC PyInit_gather(void) {
    if (_import_array() < 0 || groupsum_import_numpy() < 0) return NULL;
    name_n = PyUnicode_InternFromString("n");
    name_ts = PyUnicode_InternFromString("ts");
    name_vals = PyUnicode_InternFromString("vals");
    if (!name_n || !name_ts || !name_vals) return NULL;
    return PyModule_Create(&module);
}
