/*
 * Direct access to scaler.series.Series objects from C: the store-side half of the native loop.
 *
 * Series is a Python class with __slots__; each slot is a member descriptor at a fixed offset
 * in the instance. series_layout_init() reads those offsets once from the class (checking that
 * each is an object slot), so the loop reads and writes a series' fields with a load and a
 * store instead of attribute look-ups. Only instances of exactly that class are accessed this
 * way (series_check()), and series_append() keeps every invariant of Series.append: the same
 * trim-then-grow policy when the arrays are full, and Series.append itself (in Python) for a
 * sample that is not newer than the series' last one.
 */
#ifndef SCALER_NATIVE_SERIES_H
#define SCALER_NATIVE_SERIES_H

#include <Python.h>
#include <stdint.h>

typedef struct {
    PyTypeObject *type; /* scaler.series.Series (a strong reference) */
    Py_ssize_t alive, delta_total, last, n, name, ts, vals; /* slot offsets */
    Py_ssize_t initial_capacity;                           /* scaler.series.INITIAL_CAPACITY */
    PyObject *no_sample;                                   /* scaler.series.NO_SAMPLE */
    PyObject *append;                                      /* "append", interned */
} SeriesLayout;

#define SERIES_SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

/* Read the slot offsets of `cls`; 0, or -1 with TypeError when it is not such a class. */
int series_layout_init(SeriesLayout *layout, PyObject *cls, Py_ssize_t initial_capacity, PyObject *no_sample);
void series_layout_clear(SeriesLayout *layout);
int series_layout_traverse(SeriesLayout *layout, visitproc visit, void *arg);

/* 0 when `obj` is a Series of this layout; -1 with TypeError otherwise. */
int series_check(const SeriesLayout *layout, PyObject *obj);

static inline int series_alive(const SeriesLayout *layout, PyObject *series) {
    return SERIES_SLOT(series, layout->alive) == Py_True;
}

/* Borrowed: the metric name (NULL if unset, which Series.__init__ never leaves). */
static inline PyObject *series_name(const SeriesLayout *layout, PyObject *series) {
    return SERIES_SLOT(series, layout->name);
}

/* Add `*value` to the delta running total: 1 and `*value` = the new total, 0 when the total
 * is not finite (the sample is rejected, the total unchanged), -1 on error. */
int series_add_delta(const SeriesLayout *layout, PyObject *series, double *value);

/* Series.append(ts, value, cutoff): `ts_obj` is `ts` as a Python int (shared by the samples of
 * a point, so setting `last` allocates nothing). Adds to `*moved` the samples it moved, copied
 * or allocated room for (trimming, growing, inserting), a measure of its cost beyond the store.
 * 0, or -1 with an exception. */
int series_append(const SeriesLayout *layout, PyObject *series, int64_t ts, PyObject *ts_obj, double value,
                  int64_t cutoff, Py_ssize_t *moved);

/* numpy's C API for series.c; call once at module init. 0, or -1 with an exception. */
int series_import_numpy(void);

#endif /* SCALER_NATIVE_SERIES_H */
