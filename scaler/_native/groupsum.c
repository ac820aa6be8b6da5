/* PromQL's sum per group over an array of values, in one pass (see groupsum.h). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include "groupsum.h"

int groupsum_import_numpy(void) { return _import_array(); }

static PyArrayObject *vector_arg(PyObject *obj, int type, const char *what) {
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != type || PyArray_NDIM((PyArrayObject *)obj) != 1 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)obj)) {
        PyErr_Format(PyExc_TypeError, "group_sums: %s is not a contiguous 1-d array of the right type", what);
        return NULL;
    }
    return (PyArrayObject *)obj;
}

PyObject *group_sums(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *values_obj, *groups_obj;
    Py_ssize_t ngroups;
    if (!PyArg_ParseTuple(args, "OOn", &values_obj, &groups_obj, &ngroups)) return NULL;
    PyArrayObject *values = vector_arg(values_obj, NPY_FLOAT64, "values");
    PyArrayObject *groups = values ? vector_arg(groups_obj, NPY_INT64, "groups") : NULL;
    if (!groups) return NULL;
    Py_ssize_t n = PyArray_DIM(values, 0);
    if (PyArray_DIM(groups, 0) != n || ngroups < 0) {
        PyErr_SetString(PyExc_ValueError, "group_sums: one group per value, and ngroups >= 0");
        return NULL;
    }
    const double *v = (const double *)PyArray_DATA(values);
    const int64_t *g = (const int64_t *)PyArray_DATA(groups);
    double *sum = PyMem_Calloc((size_t)ngroups + 1, sizeof(double));
    double *comp = PyMem_Calloc((size_t)ngroups + 1, sizeof(double));
    int64_t *slot = PyMem_Malloc(((size_t)ngroups + 1) * sizeof(int64_t));
    PyObject *order = NULL, *sums = NULL;
    Py_ssize_t found = 0;
    if (!sum || !comp || !slot) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < ngroups; j++) slot[j] = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t k = g[i];
        if (k < 0 || k >= ngroups) {
            PyErr_SetString(PyExc_ValueError, "group_sums: a group index is out of range");
            goto done;
        }
        double f = v[i];
        if (slot[k] < 0) { /* a group's first member starts its sum */
            slot[k] = found++;
            sum[k] = f;
            continue;
        }
        double s = sum[k], t = s + f; /* kahanSumInc */
        if (isinf(t))
            comp[k] = 0;
        else if (fabs(s) >= fabs(f))
            comp[k] += (s - t) + f;
        else
            comp[k] += (f - t) + s;
        sum[k] = t;
    }
    npy_intp dims[1] = {(npy_intp)found};
    order = PyArray_SimpleNew(1, dims, NPY_INT64);
    sums = PyArray_SimpleNew(1, dims, NPY_FLOAT64);
    if (order && sums) {
        int64_t *o = (int64_t *)PyArray_DATA((PyArrayObject *)order);
        double *out = (double *)PyArray_DATA((PyArrayObject *)sums);
        for (Py_ssize_t k = 0; k < ngroups; k++) {
            if (slot[k] < 0) continue;
            o[slot[k]] = k;
            out[slot[k]] = sum[k] + comp[k];
        }
    }
done:
    PyMem_Free(sum);
    PyMem_Free(comp);
    PyMem_Free(slot);
    if (PyErr_Occurred() || !order || !sums) {
        Py_XDECREF(order);
        Py_XDECREF(sums);
        return NULL;
    }
    return Py_BuildValue("NN", order, sums);
}
