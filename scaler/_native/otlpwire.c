/*
 * scaler._native.otlpwire: the native OTLP ingest hot loop.
 *
 * Reads the protobuf wire bytes of an ExportMetricsServiceRequest directly (no upb message
 * objects), and appends every data point's samples to the store's series. The label sets and
 * the "plan" of a data point (which value goes to which series, in the reference's order) are
 * computed once by Python (scaler.nativeingest, which reuses scaler.otlp) and cached under a
 * key made of the raw bytes that determine them: the resource, the metric name and kind, the
 * point's attribute bytes and its shape (histogram bounds, quantiles, exponential layout).
 * A known point then costs a dict lookup and, per sample, a few loads and stores into its
 * series (series.c: the Series fields by slot offset, the arrays grown and trimmed in C).
 *
 * Files: wire.h reads the protobuf wire format; series.c appends to a Series; this file walks
 * the request (resources, scopes, metrics, points), keeps the point cache and is the module.
 *
 * Safety: every read is bounds-checked against the buffer; nothing recurses (unknown groups
 * are skipped with an explicit depth limit); malformed input raises ValueError. The receivers
 * validate requests with protobuf first, so in production that error is never seen; the fuzz
 * target feeds hostile bytes here directly.
 *
 * Everything runs with the GIL held, on the event loop, in slices bounded by a sample budget.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "series.h"
#include "wire.h"

/* ------------------------------------------------------------------ constants */

enum { KIND_GAUGE = 5, KIND_SUM = 7, KIND_HISTOGRAM = 9, KIND_EXPONENTIAL = 10, KIND_SUMMARY = 11 };
/* The order of scaler.model.RejectReason. */
enum {
    R_TOO_OLD, R_TOO_FAR_IN_FUTURE, R_SERIES_LIMIT, R_TOO_MANY_LABELS, R_LABEL_NAME_TOO_LONG,
    R_LABEL_VALUE_TOO_LONG, R_INVALID_NAME, R_INVALID_VALUE, R_UNSUPPORTED, N_REASONS
};
/* Plan codes: where a sample's value comes from. >= 0: an index (cumulative bucket, quantile). */
enum { SRC_VALUE = -1, SRC_COUNT = -2, SRC_SUM = -3 };
#define MISS_WEIGHT 32 /* a point resolved in Python costs about as much as this many cached samples */
#define ATTRIBUTES_END UINT64_MAX /* ends a point's attribute chunks in its cache key */
#define MOVES_PER_SAMPLE 32 /* an append costs about as much as moving this many samples of a full series */
#define DELTA_TEMPORALITY 1u
#define NO_RECORDED_VALUE 1u
static const uint64_t STALE_NAN_BITS = 0x7FF0000000000002ull;

/* ------------------------------------------------------------------ the Ingest object */

typedef struct {
    PyObject_HEAD
    PyObject *points;       /* key bytes -> (plan bytes, targets tuple) */
    PyObject *resources;    /* resource bytes -> id */
    PyObject *resolve;      /* (context, kind, name, point bytes, want_series) -> (plan, targets | None) */
    PyObject *new_resource; /* resource bytes -> context */
    SeriesLayout series;    /* how to reach the fields of a scaler.series.Series */
    uint64_t next_resource;
    Buf key, resource;
    U64s counts, negative, bounds, quantiles;
    double *values;
    size_t values_cap;
} Ingest;

typedef struct {
    const uint8_t *base; /* the request's first byte, for offsets */
    int64_t now_ms, cutoff, horizon;
    Py_ssize_t budget, done;
    Py_ssize_t moved; /* samples moved or allocated by trims and growth (series.c): slices stay short
                       * when many series fill up in the same request */
    Py_ssize_t accepted, data_points;
    Py_ssize_t rejected[N_REASONS];
    PyObject *touched;    /* set: the metric names that received samples in this run */
    PyObject *written;    /* borrowed dict: metric name -> samples accepted, added to across runs */
    PyObject *watched;    /* borrowed: the names whose touched series are reported */
    PyObject *series_out; /* list: the touched series of watched names */
    PyObject *last_name;  /* borrowed: the name counted last (kept alive by `touched`) */
    Py_ssize_t pending;   /* samples of last_name not yet added to `written` */
    int last_watched;     /* whether last_name is watched */
} Run;

/* One data point, as far as the translation needs it. */
typedef struct {
    uint64_t time_ns, count, zero_count, flags;
    double value, sum, zero_threshold;
    int has_sum;
    int32_t scale, positive_offset, negative_offset;
} Point;

/* One resource of the request: its id (in point keys), its bytes, and its context (promoted
 * labels) made from the bytes only when a point of it must be resolved: the cache keeps no
 * context, only ids. */
typedef struct {
    uint64_t id;
    PyObject *raw;     /* a new reference */
    PyObject *context; /* a new reference, NULL until needed */
} Res;

static void res_release(Res *res) {
    Py_CLEAR(res->raw);
    Py_CLEAR(res->context);
}

static PyObject *res_context(Ingest *self, Res *res) {
    if (!res->context) res->context = PyObject_CallOneArg(self->new_resource, res->raw);
    return res->context;
}

static int fail_malformed(Run *run, const uint8_t *at) {
    PyErr_Format(PyExc_ValueError, "malformed OTLP protobuf near byte %zd", (Py_ssize_t)(at - run->base));
    return -1;
}

static double u64_to_double(uint64_t v) { return (double)v; }

/* Add the samples counted for last_name to its entry in `written`. */
static int flush_written(Run *run) {
    if (!run->pending) return 0;
    PyObject *old = PyDict_GetItemWithError(run->written, run->last_name); /* borrowed */
    Py_ssize_t before = 0;
    if (old) before = PyLong_AsSsize_t(old);
    if ((!old || before == -1) && PyErr_Occurred()) return -1;
    PyObject *count = PyLong_FromSsize_t(before + run->pending);
    if (!count) return -1;
    int rc = PyDict_SetItem(run->written, run->last_name, count);
    Py_DECREF(count);
    run->pending = 0;
    return rc;
}

/* Count one accepted sample of `series` under its metric name, and report the series itself
 * in series_out when its name is watched. */
static int touch(Ingest *self, Run *run, PyObject *series) {
    PyObject *name = series_name(&self->series, series);
    if (name != run->last_name) {
        if (!name) {
            PyErr_SetString(PyExc_AttributeError, "a Series slot is unset");
            return -1;
        }
        if (flush_written(run) < 0 || PySet_Add(run->touched, name) < 0) return -1;
        run->last_name = name; /* kept alive by the set */
        run->last_watched = PySet_GET_SIZE(run->watched) ? PySet_Contains(run->watched, name) : 0;
        if (run->last_watched < 0) return -1;
    }
    run->pending++;
    return run->last_watched ? PyList_Append(run->series_out, series) : 0;
}

/* Store.append for one sample of a resolved series: the same checks in the same order. */
static int append_sample(Ingest *self, Run *run, PyObject *series, int64_t ts, PyObject *ts_obj, double value,
                         int is_delta) {
    if (is_delta) {
        int ok = series_add_delta(&self->series, series, &value);
        if (ok <= 0) {
            if (ok == 0) run->rejected[R_INVALID_VALUE]++;
            return ok;
        }
    }
    if (series_append(&self->series, series, ts, ts_obj, value, run->cutoff, &run->moved) < 0) return -1;
    run->accepted++;
    return touch(self, run, series);
}

/* ------------------------------------------------------------------ one data point */

/* Cumulative counts as the reference computes them (exact integer sums, then one rounding). */
static int cumulate(Ingest *self, const uint64_t *counts, size_t n) {
    double *values = grown(self->values, &self->values_cap, n, sizeof(double), 64);
    if (!values) return -1;
    self->values = values;
    unsigned __int128 total = 0;
    for (size_t i = 0; i < n; i++) {
        total += counts[i];
        self->values[i] = (double)total;
    }
    return 0;
}

/* Parse the fields of one data point into `pt`, the key's attribute and shape parts into
 * self->key, and the counts / bounds / quantiles into the scratch arrays. */
static int parse_point(Ingest *self, Run *run, int kind, Rd r, Point *pt) {
    const uint32_t f_attrs = kind == KIND_HISTOGRAM ? 9 : kind == KIND_EXPONENTIAL ? 1 : 7;
    const uint32_t f_flags = (kind == KIND_HISTOGRAM || kind == KIND_EXPONENTIAL) ? 10 : 8;
    memset(pt, 0, sizeof *pt);
    self->counts.len = self->negative.len = self->bounds.len = self->quantiles.len = 0;
    while (r.p < r.end) {
        const uint8_t *at = r.p;
        uint32_t f;
        int wt;
        uint64_t v;
        if (rd_tag(&r, &f, &wt) < 0) return fail_malformed(run, at);
        if (f == f_attrs && wt == WT_LEN) {
            Rd kv;
            if (rd_len(&r, &kv) < 0) return fail_malformed(run, at);
            if (buf_put_chunk(&self->key, kv.p, (size_t)(kv.end - kv.p)) < 0) return -1;
            continue;
        }
        if (f == f_flags && wt == WT_VARINT) {
            if (rd_varint(&r, &v) < 0) return fail_malformed(run, at);
            pt->flags = (uint32_t)v;
            continue;
        }
        if (f == 3 && wt == WT_I64) {
            if (rd_fixed64(&r, &pt->time_ns) < 0) return fail_malformed(run, at);
            continue;
        }
        int handled = 1;
        if (kind == KIND_GAUGE || kind == KIND_SUM) {
            if ((f == 4 || f == 6) && wt == WT_I64) { /* as_double, as_int: the oneof, last wins */
                if (rd_fixed64(&r, &v) < 0) return fail_malformed(run, at);
                if (f == 4) memcpy(&pt->value, &v, 8);
                else pt->value = (double)(int64_t)v;
            } else {
                handled = 0;
            }
        } else if (f == 4 && wt == WT_I64) { /* count */
            if (rd_fixed64(&r, &pt->count) < 0) return fail_malformed(run, at);
        } else if (f == 5 && wt == WT_I64) {
            if (rd_fixed64(&r, &v) < 0) return fail_malformed(run, at);
            memcpy(&pt->sum, &v, 8);
            pt->has_sum = 1;
        } else if (kind == KIND_HISTOGRAM && f == 6 && (wt == WT_LEN || wt == WT_I64)) {
            if (read_repeated(&r, wt, 1, &self->counts) < 0) return PyErr_Occurred() ? -1 : fail_malformed(run, at);
        } else if (kind == KIND_HISTOGRAM && f == 7 && (wt == WT_LEN || wt == WT_I64)) {
            if (read_repeated(&r, wt, 1, &self->bounds) < 0) return PyErr_Occurred() ? -1 : fail_malformed(run, at);
        } else if (kind == KIND_EXPONENTIAL && f == 6 && wt == WT_VARINT) {
            if (rd_varint(&r, &v) < 0) return fail_malformed(run, at);
            uint32_t z = (uint32_t)v;
            pt->scale = (int32_t)((z >> 1) ^ (~(z & 1) + 1));
        } else if (kind == KIND_EXPONENTIAL && f == 7 && wt == WT_I64) {
            if (rd_fixed64(&r, &pt->zero_count) < 0) return fail_malformed(run, at);
        } else if (kind == KIND_EXPONENTIAL && f == 14 && wt == WT_I64) {
            if (rd_fixed64(&r, &v) < 0) return fail_malformed(run, at);
            memcpy(&pt->zero_threshold, &v, 8);
        } else if (kind == KIND_EXPONENTIAL && (f == 8 || f == 9) && wt == WT_LEN) {
            Rd b;
            if (rd_len(&r, &b) < 0) return fail_malformed(run, at);
            U64s *out = f == 8 ? &self->counts : &self->negative;
            int32_t *offset = f == 8 ? &pt->positive_offset : &pt->negative_offset;
            while (b.p < b.end) { /* Buckets: a repeated occurrence merges (offset: last wins) */
                const uint8_t *bat = b.p;
                uint32_t bf;
                int bwt;
                if (rd_tag(&b, &bf, &bwt) < 0) return fail_malformed(run, bat);
                if (bf == 1 && bwt == WT_VARINT) {
                    if (rd_varint(&b, &v) < 0) return fail_malformed(run, bat);
                    uint32_t z = (uint32_t)v;
                    *offset = (int32_t)((z >> 1) ^ (~(z & 1) + 1));
                } else if (bf == 2 && (bwt == WT_LEN || bwt == WT_VARINT)) {
                    if (read_repeated(&b, bwt, 0, out) < 0) return PyErr_Occurred() ? -1 : fail_malformed(run, bat);
                } else if (rd_skip(&b, bf, bwt) < 0) {
                    return fail_malformed(run, bat);
                }
            }
        } else if (kind == KIND_SUMMARY && f == 6 && wt == WT_LEN) {
            Rd q;
            if (rd_len(&r, &q) < 0) return fail_malformed(run, at);
            uint64_t quantile = 0, value = 0;
            while (q.p < q.end) {
                const uint8_t *qat = q.p;
                uint32_t qf;
                int qwt;
                if (rd_tag(&q, &qf, &qwt) < 0) return fail_malformed(run, qat);
                if ((qf == 1 || qf == 2) && qwt == WT_I64) {
                    if (rd_fixed64(&q, qf == 1 ? &quantile : &value) < 0) return fail_malformed(run, qat);
                } else if (rd_skip(&q, qf, qwt) < 0) {
                    return fail_malformed(run, qat);
                }
            }
            if (u64s_push(&self->bounds, quantile) < 0 || u64s_push(&self->quantiles, value) < 0) return -1;
        } else {
            handled = 0;
        }
        if (!handled && rd_skip(&r, f, wt) < 0) return fail_malformed(run, at);
    }
    return 0;
}

/* The shape part of the key: whatever decides the number, order and labels of the samples. */
static int put_shape(Ingest *self, int kind, const Point *pt) {
    Buf *k = &self->key;
    if (kind == KIND_HISTOGRAM) {
        return buf_put_u64(k, self->counts.len) < 0 || buf_put_u64(k, (uint64_t)pt->has_sum) < 0 ||
                       buf_put(k, self->bounds.v, self->bounds.len * 8) < 0
                   ? -1
                   : 0;
    }
    if (kind == KIND_EXPONENTIAL) {
        uint64_t zt;
        memcpy(&zt, &pt->zero_threshold, 8);
        int32_t shape[3] = {pt->scale, pt->positive_offset, pt->negative_offset};
        return buf_put(k, shape, sizeof shape) < 0 || buf_put_u64(k, zt) < 0 || buf_put_u64(k, self->counts.len) < 0 ||
                       buf_put_u64(k, self->negative.len) < 0
                   ? -1
                   : 0;
    }
    if (kind == KIND_SUMMARY) return buf_put(k, self->bounds.v, self->bounds.len * 8);
    return 0;
}

/* The raw bucket list of an exponential histogram in the reference's order (negative buckets
 * from the highest index down, the zero bucket, positive buckets, the +Inf bucket's 0),
 * cumulated into self->values. */
static int exponential_values(Ingest *self, const Point *pt) {
    U64s *raw = &self->bounds; /* free for exponential histograms */
    raw->len = 0;
    for (size_t i = self->negative.len; i-- > 0;)
        if (u64s_push(raw, self->negative.v[i]) < 0) return -1;
    if (u64s_push(raw, pt->zero_count) < 0) return -1;
    for (size_t i = 0; i < self->counts.len; i++)
        if (u64s_push(raw, self->counts.v[i]) < 0) return -1;
    if (u64s_push(raw, 0) < 0) return -1;
    return cumulate(self, raw->v, raw->len);
}

/* (plan, targets) for the point from the cache, or from Python on a miss (cached when every
 * sample has a series). Returns a new reference to the entry, or NULL with an exception. */
static PyObject *entry_for(Ingest *self, PyObject *key, Res *res, int kind, PyObject *name,
                           const uint8_t *p, size_t len, int want_series, int *missed) {
    PyObject *entry = PyDict_GetItemWithError(self->points, key);
    if (entry) {
        if (!want_series) return Py_NewRef(entry);
        PyObject *targets = PyTuple_GET_ITEM(entry, 1);
        int all_alive = 1;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(targets) && all_alive; i++)
            all_alive = series_alive(&self->series, PyTuple_GET_ITEM(targets, i)); /* checked when cached */
        if (all_alive) return Py_NewRef(entry);
    } else if (PyErr_Occurred()) {
        return NULL;
    }
    *missed = 1;
    PyObject *point = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)len);
    if (!point) return NULL;
    PyObject *context = res_context(self, res);
    entry = context ? PyObject_CallFunction(self->resolve, "OiOOO", context, kind, name, point,
                                            want_series ? Py_True : Py_False)
                    : NULL;
    Py_DECREF(point);
    if (!entry) return NULL;
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(entry, 0)) ||
        PyBytes_GET_SIZE(PyTuple_GET_ITEM(entry, 0)) % 4 ||
        (want_series && (!PyTuple_Check(PyTuple_GET_ITEM(entry, 1)) ||
                         PyTuple_GET_SIZE(PyTuple_GET_ITEM(entry, 1)) * 4 != PyBytes_GET_SIZE(PyTuple_GET_ITEM(entry, 0))))) {
        Py_DECREF(entry);
        PyErr_SetString(PyExc_TypeError, "resolve() must return (plan bytes, targets tuple of one per sample)");
        return NULL;
    }
    if (want_series) {
        PyObject *targets = PyTuple_GET_ITEM(entry, 1);
        int cacheable = 1;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(targets); i++) {
            PyObject *target = PyTuple_GET_ITEM(targets, i);
            if (PyLong_Check(target)) {
                cacheable = 0;
            } else if (series_check(&self->series, target) < 0) {
                Py_DECREF(entry);
                return NULL;
            }
        }
        if (cacheable && PyDict_SetItem(self->points, key, entry) < 0) {
            Py_DECREF(entry);
            return NULL;
        }
    }
    return entry;
}

static int point_samples(Ingest *self, Run *run, Res *res, int kind, PyObject *name,
                         const uint8_t *name_p, size_t name_len, int delta_metric, Rd r) {
    const uint8_t *p = r.p;
    size_t len = (size_t)(r.end - r.p);
    Point pt;
    self->key.len = 0;
    if (buf_put_u64(&self->key, res->id) < 0 || buf_put(&self->key, &kind, sizeof kind) < 0 ||
        buf_put_chunk(&self->key, name_p, name_len) < 0)
        return -1;
    /* The attribute chunks end with a length no chunk has, so that the shape after them can
     * never read as an attribute (an empty attribute and a summary's quantile 0 collided). */
    if (parse_point(self, run, kind, r, &pt) < 0 || buf_put_u64(&self->key, ATTRIBUTES_END) < 0 ||
        put_shape(self, kind, &pt) < 0)
        return -1;
    if (kind == KIND_HISTOGRAM && self->counts.len && self->counts.len != self->bounds.len + 1) {
        run->rejected[R_UNSUPPORTED]++;
        return 0;
    }
    int64_t ts = pt.time_ns ? (int64_t)(pt.time_ns / 1000000u) : run->now_ms;
    int in_range = ts >= run->cutoff && ts <= run->horizon;
    PyObject *key = PyBytes_FromStringAndSize((const char *)self->key.data, (Py_ssize_t)self->key.len);
    if (!key) return -1;
    int missed = 0;
    PyObject *entry = entry_for(self, key, res, kind, name, p, len, in_range, &missed);
    Py_DECREF(key);
    if (!entry) return -1;
    PyObject *plan = PyTuple_GET_ITEM(entry, 0);
    Py_ssize_t n = PyBytes_GET_SIZE(plan) / 4;
    run->done += missed ? MISS_WEIGHT * (n ? n : 1) : n;
    if (!in_range) {
        run->rejected[ts < run->cutoff ? R_TOO_OLD : R_TOO_FAR_IN_FUTURE] += n;
        Py_DECREF(entry);
        return 0;
    }
    int rc = 0;
    if (kind == KIND_HISTOGRAM) rc = cumulate(self, self->counts.v, self->counts.len);
    else if (kind == KIND_EXPONENTIAL) rc = exponential_values(self, &pt);
    const int stale = (pt.flags & NO_RECORDED_VALUE) != 0;
    const int is_delta = delta_metric && !stale && kind != KIND_SUMMARY && kind != KIND_GAUGE;
    double stale_nan;
    memcpy(&stale_nan, &STALE_NAN_BITS, 8);
    const char *codes = PyBytes_AS_STRING(plan);
    PyObject *targets = PyTuple_GET_ITEM(entry, 1);
    PyObject *ts_obj = NULL; /* ts as an int, shared by the point's series as their `last` */
    for (Py_ssize_t i = 0; i < n && rc == 0; i++) {
        int32_t code;
        memcpy(&code, codes + 4 * i, 4);
        PyObject *target = PyTuple_GET_ITEM(targets, i);
        if (PyLong_Check(target)) {
            long reason = PyLong_AsLong(target);
            if (reason < 0 || reason >= N_REASONS) {
                PyErr_SetString(PyExc_ValueError, "resolve() returned an unknown reject reason");
                rc = -1;
            } else {
                run->rejected[reason]++;
            }
            continue;
        }
        double value;
        if (stale) value = stale_nan;
        else if (code == SRC_VALUE) value = pt.value;
        else if (code == SRC_COUNT) value = u64_to_double(pt.count);
        else if (code == SRC_SUM) value = pt.sum;
        else if (kind == KIND_SUMMARY && (size_t)code < self->quantiles.len) memcpy(&value, &self->quantiles.v[code], 8);
        else if ((kind == KIND_HISTOGRAM && (size_t)code < self->counts.len) ||
                 (kind == KIND_EXPONENTIAL && (size_t)code < self->bounds.len))
            value = self->values[code];
        else {
            PyErr_SetString(PyExc_ValueError, "resolve() returned a plan that does not fit the point");
            rc = -1;
            break;
        }
        if (!ts_obj && !(ts_obj = PyLong_FromLongLong(ts))) {
            rc = -1;
            break;
        }
        rc = append_sample(self, run, target, ts, ts_obj, value, is_delta);
    }
    Py_XDECREF(ts_obj);
    Py_DECREF(entry);
    return rc;
}

/* ------------------------------------------------------------------ metrics, scopes, resources */

static int metric_samples(Ingest *self, Run *run, Res *res, Rd m) {
    /* Pass 1: the name (last wins) and the oneof `data` (last wins; occurrences of the same
     * member merge, one of another member clears it). */
    const uint8_t *name_p = NULL, *kind_start = NULL;
    size_t name_len = 0;
    int kind = 0;
    Rd r = m;
    while (r.p < r.end) {
        const uint8_t *at = r.p;
        uint32_t f;
        int wt;
        Rd sub;
        if (rd_tag(&r, &f, &wt) < 0) return fail_malformed(run, at);
        if (wt == WT_LEN && (f == 1 || f == KIND_GAUGE || f == KIND_SUM || f == KIND_HISTOGRAM ||
                             f == KIND_EXPONENTIAL || f == KIND_SUMMARY)) {
            if (rd_len(&r, &sub) < 0) return fail_malformed(run, at);
            if (f == 1) {
                name_p = sub.p;
                name_len = (size_t)(sub.end - sub.p);
            } else if ((int)f != kind) {
                kind = (int)f;
                kind_start = at;
            }
        } else if (rd_skip(&r, f, wt) < 0) {
            return fail_malformed(run, at);
        }
    }
    if (!kind) return 0;
    /* Pass 2: temporality (last wins across the merged occurrences) and the point count. */
    uint64_t temporality = 0;
    Py_ssize_t points = 0;
    for (int pass = 0; pass < 2; pass++) {
        r.p = kind_start;
        r.end = m.end;
        PyObject *name = NULL;
        int delta = 0;
        if (pass == 1) {
            run->data_points += points;
            if (!name_len) {
                run->rejected[R_INVALID_NAME] += points;
                return 0;
            }
            name = PyUnicode_DecodeUTF8((const char *)name_p, (Py_ssize_t)name_len, "strict");
            if (!name) return -1;
            delta = kind != KIND_GAUGE && kind != KIND_SUMMARY && (uint32_t)temporality == DELTA_TEMPORALITY;
        }
        while (r.p < r.end) {
            const uint8_t *at = r.p;
            uint32_t f;
            int wt;
            Rd data;
            if (rd_tag(&r, &f, &wt) < 0 || (f == (uint32_t)kind && wt == WT_LEN ? rd_len(&r, &data) : rd_skip(&r, f, wt)) < 0) {
                Py_XDECREF(name);
                return fail_malformed(run, at);
            }
            if (f != (uint32_t)kind || wt != WT_LEN) continue;
            while (data.p < data.end) {
                const uint8_t *dat = data.p;
                uint32_t df;
                int dwt;
                Rd point;
                uint64_t v;
                int bad = rd_tag(&data, &df, &dwt) < 0;
                if (!bad && df == 1 && dwt == WT_LEN) {
                    bad = rd_len(&data, &point) < 0;
                    if (!bad && pass == 0) points++;
                    if (!bad && pass == 1 &&
                        point_samples(self, run, res, kind, name, name_p, name_len, delta, point) < 0) {
                        Py_DECREF(name);
                        return -1;
                    }
                } else if (!bad && df == 2 && dwt == WT_VARINT && kind != KIND_GAUGE && kind != KIND_SUMMARY) {
                    bad = rd_varint(&data, &v) < 0;
                    temporality = v;
                } else if (!bad) {
                    bad = rd_skip(&data, df, dwt) < 0;
                }
                if (bad) {
                    Py_XDECREF(name);
                    return fail_malformed(run, dat);
                }
            }
        }
        Py_XDECREF(name);
    }
    return 0;
}

/* The resource `rm` (by the bytes of its merged occurrences) into `res`: 0, or -1. */
static int resource_of(Ingest *self, Run *run, Rd rm, Res *res) {
    self->resource.len = 0;
    while (rm.p < rm.end) {
        const uint8_t *at = rm.p;
        uint32_t f;
        int wt;
        Rd sub;
        if (rd_tag(&rm, &f, &wt) < 0) return fail_malformed(run, at);
        if (f == 1 && wt == WT_LEN) {
            if (rd_len(&rm, &sub) < 0) return fail_malformed(run, at);
            if (buf_put(&self->resource, sub.p, (size_t)(sub.end - sub.p)) < 0) return -1;
        } else if (rd_skip(&rm, f, wt) < 0) {
            return fail_malformed(run, at);
        }
    }
    res->raw = PyBytes_FromStringAndSize((const char *)self->resource.data, (Py_ssize_t)self->resource.len);
    if (!res->raw) return -1;
    PyObject *found = PyDict_GetItemWithError(self->resources, res->raw); /* borrowed */
    if (!found) {
        if (PyErr_Occurred()) return -1;
        PyObject *id = PyLong_FromUnsignedLongLong(self->next_resource);
        int rc = id ? PyDict_SetItem(self->resources, res->raw, id) : -1;
        Py_XDECREF(id);
        if (rc < 0) return -1;
        res->id = self->next_resource++;
        return 0;
    }
    res->id = (uint64_t)PyLong_AsUnsignedLongLong(found);
    return 0;
}

/* Resume point: byte offsets of the next resource_metrics, scope_metrics and metric tags. */
typedef struct {
    Py_ssize_t rm, sm, metric;
} Pos;

/* Process from `pos`; on return `pos` is where to resume, or rm == -1 when the request is done. */
static int request_samples(Ingest *self, Run *run, const uint8_t *data, Py_ssize_t size, Pos *pos) {
    Rd top = {data + pos->rm, data + size};
    int first_rm = 1;
    while (top.p < top.end) {
        const uint8_t *rm_at = top.p;
        uint32_t f;
        int wt;
        Rd rm;
        if (rd_tag(&top, &f, &wt) < 0) return fail_malformed(run, rm_at);
        if (f != 1 || wt != WT_LEN) {
            if (rd_skip(&top, f, wt) < 0) return fail_malformed(run, rm_at);
            continue;
        }
        if (rd_len(&top, &rm) < 0) return fail_malformed(run, rm_at);
        Res res = {0};
        if (resource_of(self, run, rm, &res) < 0) {
            res_release(&res);
            return -1;
        }
        Rd sms = rm;
        if (first_rm && pos->sm > rm_at - data) sms.p = data + pos->sm;
        while (sms.p < sms.end) {
            const uint8_t *sm_at = sms.p;
            Rd sm;
            if (rd_tag(&sms, &f, &wt) < 0 || (f == 2 && wt == WT_LEN ? rd_len(&sms, &sm) : rd_skip(&sms, f, wt)) < 0) {
                res_release(&res);
                return fail_malformed(run, sm_at);
            }
            if (f != 2 || wt != WT_LEN) continue;
            Rd ms = sm;
            if (first_rm && pos->metric > sm_at - data && pos->sm == sm_at - data) ms.p = data + pos->metric;
            first_rm = 0;
            while (ms.p < ms.end) {
                const uint8_t *m_at = ms.p;
                Rd metric = {NULL, NULL}; /* set by rd_len before use; GCC cannot see it */
                if (rd_tag(&ms, &f, &wt) < 0 ||
                    (f == 2 && wt == WT_LEN ? rd_len(&ms, &metric) : rd_skip(&ms, f, wt)) < 0) {
                    res_release(&res);
                    return fail_malformed(run, m_at);
                }
                if (f != 2 || wt != WT_LEN) continue;
                if (metric_samples(self, run, &res, metric) < 0) {
                    res_release(&res);
                    return -1;
                }
                if (run->done + run->moved / MOVES_PER_SAMPLE >= run->budget && (ms.p < ms.end || sms.p < sms.end || top.p < top.end)) {
                    pos->rm = rm_at - data;
                    pos->sm = sm_at - data;
                    pos->metric = ms.p - data;
                    res_release(&res);
                    return 0;
                }
            }
        }
        first_rm = 0;
        res_release(&res);
    }
    pos->rm = -1;
    return 0;
}

/* ------------------------------------------------------------------ Python API */

/* The counts by reject reason, as a list. */
static PyObject *rejected_list(const Run *run) {
    PyObject *rejected = PyList_New(N_REASONS);
    for (int i = 0; rejected && i < N_REASONS; i++) {
        PyObject *count = PyLong_FromSsize_t(run->rejected[i]);
        if (!count) Py_CLEAR(rejected);
        else PyList_SET_ITEM(rejected, i, count);
    }
    return rejected;
}

static PyObject *Ingest_run(Ingest *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"data", "pos", "now_ms", "cutoff_ms", "horizon_ms", "budget", "watched", "written", NULL};
    Py_buffer view;
    Pos pos;
    long long now_ms, cutoff, horizon;
    Py_ssize_t budget;
    PyObject *watched, *written;
    if (!self->points || !self->series.type) {
        PyErr_SetString(PyExc_RuntimeError, "Ingest.run(): the object was not initialised");
        return NULL;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*(nnn)LLLnOO!:run", names, &view, &pos.rm, &pos.sm,
                                     &pos.metric, &now_ms, &cutoff, &horizon, &budget, &watched, &PyDict_Type,
                                     &written))
        return NULL;
    if (pos.rm < 0 || pos.rm > view.len || pos.sm < 0 || pos.sm > view.len || pos.metric < 0 ||
        pos.metric > view.len || budget < 1 || !PyAnySet_Check(watched)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "run(): position outside the request, budget < 1, or watched not a set");
        return NULL;
    }
    Run run = {.base = view.buf, .now_ms = now_ms, .cutoff = cutoff, .horizon = horizon, .budget = budget,
               .watched = watched, .written = written};
    PyObject *result = NULL;
    run.touched = PySet_New(NULL);
    run.series_out = run.touched ? PyList_New(0) : NULL;
    int rc = run.series_out ? request_samples(self, &run, view.buf, view.len, &pos) : -1;
    PyBuffer_Release(&view);
    if (rc == 0) rc = flush_written(&run);
    if (rc == 0) {
        PyObject *rejected = rejected_list(&run);
        PyObject *next = pos.rm < 0 ? Py_NewRef(Py_None) : Py_BuildValue("(nnn)", pos.rm, pos.sm, pos.metric);
        if (rejected && next)
            result = Py_BuildValue("(OnnOOO)", next, run.accepted, run.data_points, rejected, run.touched,
                                   run.series_out);
        Py_XDECREF(rejected);
        Py_XDECREF(next);
    }
    Py_XDECREF(run.touched);
    Py_XDECREF(run.series_out);
    return result;
}

static PyObject *Ingest_clear(Ingest *self, PyObject *Py_UNUSED(ignored)) {
    PyDict_Clear(self->points);
    PyDict_Clear(self->resources);
    Py_RETURN_NONE;
}

static PyObject *Ingest_len(Ingest *self, void *Py_UNUSED(closure)) {
    return PyLong_FromSsize_t(PyDict_GET_SIZE(self->points));
}

static int Ingest_init(Ingest *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"new_resource", "resolve", "series_type", "initial_capacity", "no_sample", NULL};
    PyObject *new_resource, *resolve, *series_type, *no_sample;
    Py_ssize_t initial_capacity;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOnO:Ingest", names, &new_resource, &resolve, &series_type,
                                     &initial_capacity, &no_sample))
        return -1;
    if (!PyCallable_Check(new_resource) || !PyCallable_Check(resolve)) {
        PyErr_SetString(PyExc_TypeError, "Ingest(new_resource, resolve, ...): both must be callable");
        return -1;
    }
    if (series_layout_init(&self->series, series_type, initial_capacity, no_sample) < 0) return -1;
    Py_XSETREF(self->new_resource, Py_NewRef(new_resource));
    Py_XSETREF(self->resolve, Py_NewRef(resolve));
    if (!self->points && !(self->points = PyDict_New())) return -1;
    if (!self->resources && !(self->resources = PyDict_New())) return -1;
    return 0;
}

static int Ingest_traverse(Ingest *self, visitproc visit, void *arg) {
    Py_VISIT(self->points);
    Py_VISIT(self->resources);
    Py_VISIT(self->resolve);
    Py_VISIT(self->new_resource);
    return series_layout_traverse(&self->series, visit, arg);
}

static int Ingest_clear_refs(Ingest *self) {
    Py_CLEAR(self->points);
    Py_CLEAR(self->resources);
    Py_CLEAR(self->resolve);
    Py_CLEAR(self->new_resource);
    series_layout_clear(&self->series);
    return 0;
}

static void Ingest_dealloc(Ingest *self) {
    PyObject_GC_UnTrack(self);
    Ingest_clear_refs(self);
    PyMem_Free(self->key.data);
    PyMem_Free(self->resource.data);
    PyMem_Free(self->counts.v);
    PyMem_Free(self->negative.v);
    PyMem_Free(self->bounds.v);
    PyMem_Free(self->quantiles.v);
    PyMem_Free(self->values);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Ingest_methods[] = {
    {"run", (PyCFunction)(void (*)(void))Ingest_run, METH_VARARGS | METH_KEYWORDS,
     "run(data, pos, now_ms, cutoff_ms, horizon_ms, budget, watched, written) -> (next_pos | None, accepted, "
     "data_points, rejected counts by reason, touched metric names, touched series of the watched names)\n\n"
     "Samples accepted are also added, by metric name, to the dict `written` (whatever it held before).\n"
     "Append the samples of the request `data` from `pos` ((0, 0, 0) at first) until about `budget` samples "
     "have been handled, stopping at a metric boundary."},
    {"clear", (PyCFunction)Ingest_clear, METH_NOARGS, "Forget every cached point and resource."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Ingest_getset[] = {
    {"cached_points", (getter)Ingest_len, NULL, "Points in the cache.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject IngestType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "scaler._native.otlpwire.Ingest",
    .tp_basicsize = sizeof(Ingest),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Ingest(new_resource, resolve, series_type, initial_capacity, no_sample): the native OTLP translate "
              "+ append loop and its point cache.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Ingest_init,
    .tp_dealloc = (destructor)Ingest_dealloc,
    .tp_traverse = (traverseproc)Ingest_traverse,
    .tp_clear = (inquiry)Ingest_clear_refs,
    .tp_methods = Ingest_methods,
    .tp_getset = Ingest_getset,
};

/* Offsets of top-level field boundaries, about `chunk` bytes apart, from 0 to len(data): each
 * piece is itself a message of the same type (fields concatenate), so protobuf can validate a
 * large request piece by piece. Raises ValueError when the top level is malformed. */
static PyObject *chunks(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer view;
    Py_ssize_t chunk;
    if (!PyArg_ParseTuple(args, "y*n:chunks", &view, &chunk)) return NULL;
    PyObject *out = PyList_New(0);
    const uint8_t *base = view.buf;
    Rd r = {base, base + view.len};
    const uint8_t *last = base;
    int rc = out ? 0 : -1;
    if (rc == 0) {
        PyObject *zero = PyLong_FromLong(0);
        rc = zero ? PyList_Append(out, zero) : -1;
        Py_XDECREF(zero);
    }
    while (rc == 0 && r.p < r.end) {
        const uint8_t *at = r.p;
        uint32_t f;
        int wt;
        if (rd_tag(&r, &f, &wt) < 0 || rd_skip(&r, f, wt) < 0) {
            PyErr_Format(PyExc_ValueError, "malformed OTLP protobuf near byte %zd", (Py_ssize_t)(at - base));
            rc = -1;
        } else if (r.p - last >= chunk || r.p == r.end) {
            PyObject *offset = PyLong_FromSsize_t(r.p - base);
            rc = offset ? PyList_Append(out, offset) : -1;
            Py_XDECREF(offset);
            last = r.p;
        }
    }
    PyBuffer_Release(&view);
    if (rc < 0) {
        Py_XDECREF(out);
        return NULL;
    }
    return out;
}

static PyMethodDef module_methods[] = {
    {"chunks", chunks, METH_VARARGS,
     "chunks(data, chunk) -> offsets of top-level field boundaries about `chunk` bytes apart, 0 to len(data)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "scaler._native.otlpwire",
    "Native OTLP ingest: protobuf wire bytes to store samples (see scaler.nativeingest).", -1, module_methods,
};

PyMODINIT_FUNC PyInit_otlpwire(void) {
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "scaler._native.otlpwire supports little-endian hosts only");
        return NULL;
    }
    if (series_import_numpy() < 0 || PyType_Ready(&IngestType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Ingest", (PyObject *)&IngestType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
