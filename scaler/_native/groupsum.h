/* group_sums(values, groups, ngroups) -> (order, sums): PromQL's sum of each group of float64
 * values (groups[i] is the group of values[i], 0 <= groups[i] < ngroups): Prometheus'
 * Kahan-Neumaier loop (kahanSumInc) over the members in input order, the first member starting
 * the sum, and sum + compensation at the end; the groups that have members, in order of their
 * first member. Registered by the gather module (gather.c), which imports numpy for this file
 * too through groupsum_import_numpy(). */
#ifndef SCALER_GROUPSUM_H
#define SCALER_GROUPSUM_H

#include <Python.h>

int groupsum_import_numpy(void);
PyObject *group_sums(PyObject *self, PyObject *args);

#endif
