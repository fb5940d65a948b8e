/* Over 400 lines, one file: a C extension module is one translation unit here
 * (as _speedups.c), a section per deriver.
 *
 * The derivers' per-event loops in C: threads, capability, spans, markers,
 * gc and heap.  Optional, like protocol/eventlog/_speedups.c: when it is not
 * compiled, or LIVEPROF_PURE_PYTHON is set, the pure Python loops run.
 *
 * No state lives here.  Each function walks a deriver's events from an index,
 * working on the deriver's own Python containers (dicts, lists, ints), passed
 * in by the caller, and returns the index of the first event it leaves to
 * Python: a window boundary, a late event, a rare event type, anything of an
 * unexpected shape or a number beyond 64 bits.  Every check on an event comes
 * before any change for it, so the Python loop then takes that event whole,
 * as the reference does; the deriver's state stays plain Python objects (so
 * copy.deepcopy of a deriver is a full snapshot) and the points are the same
 * as the pure Python derivers' (tests/derive/test_core.py). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { MUT = 2, GC = 3, IDLE = 4 };  /* capability.py's record indices */

/* An exact int that fits in 64 bits (bool, a subclass, is refused). */
static inline int as_i64(PyObject *o, long long *out)
{
    if (!PyLong_CheckExact(o))
        return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = v;
    return 1;
}

/* Any int (an IntEnum too, as the StopThread status is) that fits in 64 bits. */
static inline int as_int64(PyObject *o, long long *out)
{
    if (!PyLong_Check(o))
        return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = v;
    return 1;
}

/* An event: (type, name, time, cap, fields), the type a small int and the
 * time a 64-bit int. */
static inline int unpack(PyObject *ev, long *ty, long long *t, PyObject **cap, PyObject **fields)
{
    if (!PyTuple_Check(ev) || PyTuple_GET_SIZE(ev) != 5)
        return 0;
    PyObject *oty = PyTuple_GET_ITEM(ev, 0);
    long long lty;
    if (!as_i64(oty, &lty) || lty < 0 || lty > 0xFFFF)
        return 0;
    *ty = (long)lty;
    if (!as_i64(PyTuple_GET_ITEM(ev, 2), t) || *t < 0)
        return 0;
    *cap = PyTuple_GET_ITEM(ev, 3);
    *fields = PyTuple_GET_ITEM(ev, 4);
    return 1;
}

/* list[i] = v (a new int); -1 on error (an exception set). */
static inline int set_i64(PyObject *list, Py_ssize_t i, long long v)
{
    PyObject *o = PyLong_FromLongLong(v);
    if (o == NULL)
        return -1;
    PyList_SET_ITEM(list, i, o);  /* steals o; the old item is released below */
    return 0;
}

#define SET_I64(list, i, v)                                     \
    do {                                                        \
        PyObject *old_ = PyList_GET_ITEM((list), (i));          \
        if (set_i64((list), (i), (v)) < 0)                      \
            goto error;                                         \
        Py_DECREF(old_);                                        \
    } while (0)

/* A list of exactly n items whose items lo..hi-1 are 64-bit ints, read into v[lo..hi-1]. */
static inline int int_list(PyObject *o, Py_ssize_t n, Py_ssize_t lo, Py_ssize_t hi, long long *v)
{
    if (!PyList_CheckExact(o) || PyList_GET_SIZE(o) != n)
        return 0;
    for (Py_ssize_t i = lo; i < hi; i++)
        if (!as_i64(PyList_GET_ITEM(o, i), &v[i]))
            return 0;
    return 1;
}

static inline int add_ok(long long a, long long b, long long *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static inline int sub_ok(long long a, long long b, long long *out)
{
    return !__builtin_sub_overflow(a, b, out);
}

/* The events as a list or tuple (a new reference), or NULL with an error. */
static PyObject *seq(PyObject *events)
{
    if (!PyList_Check(events) && !PyTuple_Check(events)) {
        PyErr_SetString(PyExc_TypeError, "events must be a list or a tuple");
        return NULL;
    }
    Py_INCREF(events);
    return events;
}

/* -- threads ------------------------------------------------------------------
 * threads(events, i, ws, we, labels, running, acc, stops, unlabelled, finished,
 *         (create, run, stop))
 * -> (index of the first event left to Python, CreateThread events counted) */

/* acc[label] gets [ns, runs] added (a new entry if none); 0: left to Python. */
static int acc_check(PyObject *acc, PyObject *label, PyObject **entry, long long *vals)
{
    PyObject *a = PyDict_GetItemWithError(acc, label);
    if (a == NULL)
        return !PyErr_Occurred();
    *entry = a;
    return int_list(a, 2, 0, 2, vals);
}

static int acc_add(PyObject *acc, PyObject *label, PyObject *entry, const long long *vals,
                   long long ns, long long runs)
{
    if (entry == NULL) {
        PyObject *a = Py_BuildValue("[LL]", ns, runs);
        if (a == NULL)
            return -1;
        int rc = PyDict_SetItem(acc, label, a);
        Py_DECREF(a);
        return rc;
    }
    if (ns) {
        PyObject *old = PyList_GET_ITEM(entry, 0);
        if (set_i64(entry, 0, vals[0] + ns) < 0)
            return -1;
        Py_DECREF(old);
    }
    if (runs) {
        PyObject *old = PyList_GET_ITEM(entry, 1);
        if (set_i64(entry, 1, vals[1] + runs) < 0)
            return -1;
        Py_DECREF(old);
    }
    return 0;
}

/* ws, we: the window's bounds as 64-bit ints; 0 if either is beyond them (then
 * every event is left to Python). */
static int bounds(PyObject *ows, PyObject *owe, long long *ws, long long *we)
{
    return as_i64(ows, ws) && as_i64(owe, we);
}

static PyObject *threads(PyObject *self, PyObject *args)
{
    PyObject *events, *labels, *running, *acc, *stops, *unlabelled, *ows, *owe;
    Py_ssize_t i;
    long long ws = 0, we = 0;
    long finished, create_t, run_t, stop_t;
    if (!PyArg_ParseTuple(args, "OnOOO!O!O!O!Ul(lll)", &events, &i, &ows, &owe, &PyDict_Type, &labels,
                          &PyDict_Type, &running, &PyDict_Type, &acc, &PyList_Type, &stops,
                          &unlabelled, &finished, &create_t, &run_t, &stop_t))
        return NULL;
    PyObject *evs = seq(events);
    if (evs == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(evs), n_status = PyList_GET_SIZE(stops);
    PyObject **items = PySequence_Fast_ITEMS(evs);
    long long created = 0;
    PyObject *key = NULL;
    if (!bounds(ows, owe, &ws, &we))
        n = i;
    for (; i < n; i++) {
        long ty;
        long long t;
        PyObject *cap, *fields;
        if (!unpack(items[i], &ty, &t, &cap, &fields) || t >= we || t < ws)
            break;
        if (ty == create_t) {
            created++;
            continue;
        }
        if (ty != stop_t && ty != run_t)  /* ThreadLabel (few), anything else: Python's */
            break;
        if (!PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) < (ty == stop_t ? 2 : 1))
            break;
        PyObject *thread = PyTuple_GET_ITEM(fields, 0);
        long long thr;
        if (!as_i64(thread, &thr))
            break;
        if (cap == Py_None) {  /* capability unknown: runs keyed by ~thread */
            key = PyLong_FromLongLong(~thr);
            if (key == NULL)
                goto error;
        } else {
            if (!PyLong_CheckExact(cap))
                break;
            key = cap;
            Py_INCREF(key);
        }
        PyObject *run = PyDict_GetItemWithError(running, key);
        if (run == NULL && PyErr_Occurred())
            goto error;
        long long rv[3] = {0, 0, 0}, sum;
        if (run != NULL && !int_list(run, 3, 0, 2, rv))
            goto leave;
        if (ty == stop_t) {
            long long status, sv = 0;
            if (!as_int64(PyTuple_GET_ITEM(fields, 1), &status))
                goto leave;
            if (status == finished) {
                int has = PyDict_Contains(labels, thread);
                if (has < 0)
                    goto error;
                if (has)  /* a labelled thread finishes: its runs are relabelled */
                    goto leave;
            }
            int counted = 0 <= status && status < n_status;
            if (counted && (!as_i64(PyList_GET_ITEM(stops, status), &sv) || sv == LLONG_MAX))
                goto leave;
            int same = 0;
            long long ns = 0, av[2] = {0, 0};
            PyObject *entry = NULL, *label = NULL;
            if (run != NULL) {
                same = rv[0] == thr;
                if (same && t > rv[1]) {
                    ns = t - rv[1];
                    label = PyList_GET_ITEM(run, 2);
                    if (!PyUnicode_CheckExact(label))
                        goto leave;
                    if (!acc_check(acc, label, &entry, av)) {
                        if (PyErr_Occurred())
                            goto error;
                        goto leave;
                    }
                    if (entry != NULL && !add_ok(av[0], ns, &sum))
                        goto leave;
                }
            }
            /* all checked: the changes */
            if (run != NULL) {
                Py_INCREF(run);
                if (PyDict_DelItem(running, key) < 0) {
                    Py_DECREF(run);
                    goto error;
                }
                int rc = 0;
                if (!same)  /* not the thread that runs there: back, at the end */
                    rc = PyDict_SetItem(running, key, run);
                else if (label != NULL)
                    rc = acc_add(acc, label, entry, av, ns, 0);
                Py_DECREF(run);
                if (rc < 0)
                    goto error;
            }
            if (counted)
                SET_I64(stops, status, sv + 1);
        } else {  /* RunThread */
            PyObject *label = PyDict_GetItemWithError(labels, thread);
            if (label == NULL) {
                if (PyErr_Occurred())
                    goto error;
                label = unlabelled;
            }
            if (!PyUnicode_CheckExact(label))
                goto leave;
            long long av[2] = {0, 0}, pv[2] = {0, 0}, ns = 0;
            PyObject *entry = NULL, *prev_entry = NULL, *prev_label = NULL;
            if (!acc_check(acc, label, &entry, av)) {
                if (PyErr_Occurred())
                    goto error;
                goto leave;
            }
            if (entry != NULL && av[1] == LLONG_MAX)
                goto leave;
            int same_label = 0;
            if (run != NULL && t > rv[1]) {  /* the previous run lost its stop: it ends here */
                ns = t - rv[1];
                prev_label = PyList_GET_ITEM(run, 2);
                if (!PyUnicode_CheckExact(prev_label))
                    goto leave;
                same_label = prev_label == label || PyUnicode_Compare(prev_label, label) == 0;
                if (!same_label && !acc_check(acc, prev_label, &prev_entry, pv)) {
                    if (PyErr_Occurred())
                        goto error;
                    goto leave;
                }
                if (same_label ? entry != NULL && !add_ok(av[0], ns, &sum)
                               : prev_entry != NULL && !add_ok(pv[0], ns, &sum))
                    goto leave;
            }
            /* all checked: the changes */
            if (prev_label != NULL && !same_label
                && acc_add(acc, prev_label, prev_entry, pv, ns, 0) < 0)
                goto error;
            if (run == NULL) {
                PyObject *r = Py_BuildValue("[OOO]", thread, PyTuple_GET_ITEM(items[i], 2), label);
                if (r == NULL)
                    goto error;
                int rc = PyDict_SetItem(running, key, r);
                Py_DECREF(r);
                if (rc < 0)
                    goto error;
            } else {
                PyObject *ot = PyTuple_GET_ITEM(items[i], 2);  /* the event's time */
                Py_INCREF(ot);
                Py_INCREF(thread);
                PyList_SetItem(run, 0, thread);
                PyList_SetItem(run, 1, ot);
                Py_INCREF(label);
                PyList_SetItem(run, 2, label);
            }
            if (acc_add(acc, label, entry, av, same_label ? ns : 0, 1) < 0)
                goto error;
        }
        Py_CLEAR(key);
        continue;
    leave:
        Py_CLEAR(key);
        break;
    }
    Py_DECREF(evs);
    return Py_BuildValue("nL", i, created);
error:
    Py_XDECREF(key);
    Py_DECREF(evs);
    return NULL;
}

/* -- capability ---------------------------------------------------------------
 * capability(events, i, we, caps, (run, stop, start_gc, end_gc)) -> index */

static PyObject *capability(PyObject *self, PyObject *args)
{
    PyObject *events, *caps, *owe;
    Py_ssize_t i;
    long long we = 0;
    long run_t, stop_t, start_t, end_t;
    if (!PyArg_ParseTuple(args, "OnOO!(llll)", &events, &i, &owe, &PyDict_Type, &caps,
                          &run_t, &stop_t, &start_t, &end_t))
        return NULL;
    PyObject *evs = seq(events);
    if (evs == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(evs);
    if (!as_i64(owe, &we))
        n = i;
    PyObject **items = PySequence_Fast_ITEMS(evs);
    for (; i < n; i++) {
        long ty;
        long long t;
        PyObject *cap, *fields;
        if (!unpack(items[i], &ty, &t, &cap, &fields))
            break;
        long state;
        if (ty == run_t)
            state = MUT;
        else if (ty == start_t)
            state = GC;
        else if (ty == stop_t || ty == end_t)
            state = IDLE;
        else {  /* CapCreate, CapDelete: Python's, unless empty (skipped there too) */
            if (t >= we || !PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) != 0)
                break;
            continue;
        }
        if (cap == Py_None)
            continue;
        if (t >= we)
            break;
        PyObject *rec = PyDict_GetItemWithError(caps, cap);
        if (rec == NULL) {
            if (PyErr_Occurred())
                goto error;
            break;  /* a new capability */
        }
        long long v[5];
        if (!int_list(rec, 5, 0, 2, v) || v[0] < MUT || v[0] > IDLE
            || !as_i64(PyList_GET_ITEM(rec, v[0]), &v[v[0]]))
            break;
        long long d, sum;
        if (!sub_ok(t, v[1], &d) || !add_ok(v[v[0]], d, &sum))
            break;
        SET_I64(rec, v[0], sum);
        SET_I64(rec, 0, state);
        PyObject *ot = PyTuple_GET_ITEM(items[i], 2);  /* the event's time, shared */
        Py_INCREF(ot);
        PyList_SetItem(rec, 1, ot);
    }
    Py_DECREF(evs);
    return PyLong_FromSsize_t(i);
error:
    Py_DECREF(evs);
    return NULL;
}

/* -- spans ------------------------------------------------------------------------
 * spans(events, i, ws, we, kinds) -> index
 * kinds: message -> (state, is_start), state [time_ns, starts, stops, open start
 * times, how many of those began before the window, sum of the others]. */

static PyObject *START_PREFIX, *STOP_PREFIX;

static PyObject *spans(PyObject *self, PyObject *args)
{
    PyObject *events, *kinds, *ows, *owe;
    Py_ssize_t i;
    long long ws = 0, we = 0;
    if (!PyArg_ParseTuple(args, "OnOOO!", &events, &i, &ows, &owe, &PyDict_Type, &kinds))
        return NULL;
    PyObject *evs = seq(events);
    if (evs == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(evs);
    if (!bounds(ows, owe, &ws, &we))
        n = i;
    PyObject **items = PySequence_Fast_ITEMS(evs);
    for (; i < n; i++) {
        long ty;
        long long t;
        PyObject *cap, *fields;
        if (!unpack(items[i], &ty, &t, &cap, &fields) || !PyTuple_CheckExact(fields)
            || PyTuple_GET_SIZE(fields) != 1)
            break;
        PyObject *msg = PyTuple_GET_ITEM(fields, 0);
        if (!PyUnicode_CheckExact(msg))
            break;
        PyObject *kind = PyDict_GetItemWithError(kinds, msg);
        if (kind == NULL) {
            if (PyErr_Occurred())
                goto error;
            Py_ssize_t a = PyUnicode_Tailmatch(msg, START_PREFIX, 0, PY_SSIZE_T_MAX, -1);
            Py_ssize_t b = a ? 1 : PyUnicode_Tailmatch(msg, STOP_PREFIX, 0, PY_SSIZE_T_MAX, -1);
            if (a < 0 || b < 0)
                goto error;
            if (a || b)
                break;  /* a span message not seen yet: Python classifies it */
            continue;  /* not a span message */
        }
        if (t >= we || t < ws || !PyTuple_CheckExact(kind) || PyTuple_GET_SIZE(kind) != 2)
            break;
        PyObject *st = PyTuple_GET_ITEM(kind, 0), *is_start = PyTuple_GET_ITEM(kind, 1);
        long long v[6];
        if (!int_list(st, 6, 0, 3, v) || !as_i64(PyList_GET_ITEM(st, 4), &v[4])
            || !as_i64(PyList_GET_ITEM(st, 5), &v[5]))
            break;
        PyObject *stack = PyList_GET_ITEM(st, 3);
        if (!PyList_CheckExact(stack))
            break;
        if (is_start == Py_True) {
            long long s;
            if (!add_ok(v[5], t, &s))
                break;
            int rc = PyList_Append(stack, PyTuple_GET_ITEM(items[i], 2));
            if (rc < 0)
                goto error;
            SET_I64(st, 1, v[1] + 1);
            SET_I64(st, 5, s);
        } else if (is_start == Py_False) {
            Py_ssize_t depth = PyList_GET_SIZE(stack);
            long long begin;
            if (depth == 0 || !as_i64(PyList_GET_ITEM(stack, depth - 1), &begin))
                break;  /* an unmatched STOP: Python counts it */
            int in_window = depth - 1 >= v[4];
            long long s5 = v[5], s0 = v[0];
            if (in_window && !sub_ok(v[5], begin, &s5))
                break;
            if (t > begin && !add_ok(v[0], t - (begin > ws ? begin : ws), &s0))
                break;
            if (PyList_SetSlice(stack, depth - 1, depth, NULL) < 0)
                goto error;
            SET_I64(st, 2, v[2] + 1);
            if (in_window)
                SET_I64(st, 5, s5);
            else
                SET_I64(st, 4, v[4] - 1);
            if (t > begin)
                SET_I64(st, 0, s0);
        } else {
            break;
        }
    }
    Py_DECREF(evs);
    return PyLong_FromSsize_t(i);
error:
    Py_DECREF(evs);
    return NULL;
}

/* -- markers ----------------------------------------------------------------------
 * markers(events, i, ws, we, user_message) -> (index, user messages counted):
 * counts the messages inside the window, leaves markers to Python. */

static PyObject *markers(PyObject *self, PyObject *args)
{
    PyObject *events, *ows, *owe;
    Py_ssize_t i;
    long long ws = 0, we = 0;
    long msg_t;
    if (!PyArg_ParseTuple(args, "OnOOl", &events, &i, &ows, &owe, &msg_t))
        return NULL;
    PyObject *evs = seq(events);
    if (evs == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(evs);
    if (!bounds(ows, owe, &ws, &we))
        n = i;
    PyObject **items = PySequence_Fast_ITEMS(evs);
    long long count = 0;
    for (; i < n; i++) {
        long ty;
        long long t;
        PyObject *cap, *fields;
        if (!unpack(items[i], &ty, &t, &cap, &fields) || ty != msg_t || t >= we || t < ws)
            break;
        count++;
    }
    Py_DECREF(evs);
    return Py_BuildValue("nL", i, count);
}

/* -- heap ---------------------------------------------------------------------
 * heap(events, i, we, alloc_last, gauges, gauge_names, (allocated, mem_return))
 * -> (index, bytes allocated, whether any figure came): HeapAllocated and the
 * gauges inside the window; MemReturn and the window's end are Python's. */

static PyObject *heap(PyObject *self, PyObject *args)
{
    PyObject *events, *alloc_last, *gauges, *names, *owe;
    Py_ssize_t i;
    long long we = 0;
    long alloc_t, mem_t;
    if (!PyArg_ParseTuple(args, "OnOO!O!O!(ll)", &events, &i, &owe, &PyDict_Type, &alloc_last,
                          &PyDict_Type, &gauges, &PyDict_Type, &names, &alloc_t, &mem_t))
        return NULL;
    PyObject *evs = seq(events);
    if (evs == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(evs);
    PyObject **items = PySequence_Fast_ITEMS(evs);
    if (!as_i64(owe, &we))
        n = i;
    long long allocated = 0;
    int any = 0;
    for (; i < n; i++) {
        long ty;
        long long t;
        PyObject *cap, *fields, *name = NULL;
        if (!unpack(items[i], &ty, &t, &cap, &fields))
            break;
        if (ty != alloc_t) {
            name = PyDict_GetItemWithError(names, PyTuple_GET_ITEM(items[i], 0));
            if (name == NULL) {
                if (PyErr_Occurred())
                    goto error;
                if (ty == mem_t)
                    break;
                continue;  /* not this deriver's */
            }
        }
        if (t >= we || !PyTuple_Check(fields))
            break;
        if (PyTuple_GET_SIZE(fields) < 2)
            continue;  /* (a shorter layout: only moves the clock) */
        PyObject *value = PyTuple_GET_ITEM(fields, 1);
        long long v;
        if (!as_i64(value, &v))
            break;
        if (name == NULL) {  /* HeapAllocated: a cumulative counter per capability */
            long long last = 0, sum;
            PyObject *olast = PyDict_GetItemWithError(alloc_last, cap);
            if (olast == NULL && PyErr_Occurred())
                goto error;
            if (olast != NULL && !as_i64(olast, &last))
                break;
            if (v > last) {
                if (!add_ok(allocated, v - last, &sum))
                    break;
                if (PyDict_SetItem(alloc_last, cap, value) < 0)
                    goto error;
                allocated = sum;
            }
        } else {  /* a gauge: last value and maximum of the window */
            PyObject *g = PyDict_GetItemWithError(gauges, name);
            long long gv[2];
            if (g == NULL) {
                if (PyErr_Occurred())
                    goto error;
                PyObject *ng = Py_BuildValue("[OO]", value, value);
                if (ng == NULL)
                    goto error;
                int rc = PyDict_SetItem(gauges, name, ng);
                Py_DECREF(ng);
                if (rc < 0)
                    goto error;
            } else {
                if (!PyList_CheckExact(g) || PyList_GET_SIZE(g) != 2
                    || !as_i64(PyList_GET_ITEM(g, 1), &gv[1]))
                    break;
                Py_INCREF(value);
                PyList_SetItem(g, 0, value);
                if (v > gv[1]) {
                    Py_INCREF(value);
                    PyList_SetItem(g, 1, value);
                }
            }
        }
        any = 1;
    }
    Py_DECREF(evs);
    return Py_BuildValue("nLO", i, allocated, any ? Py_True : Py_False);
error:
    Py_DECREF(evs);
    return NULL;
}

/* -- gc -------------------------------------------------------------------------
 * gc(deriver, events, i, in_gc, collection, (start, end, stats, sync, request
 * par, request seq), out, Point) -> index: a collection's life and its point
 * (appended to out).  The deriver's ``_cur`` (open collection), ``_pending``
 * (closed, waiting for its statistics) and ``_request`` are read and set as
 * gc.py's handlers do; the statistics of no collection, a collection holding
 * what well-formed events do not give (gc_point), a capability of None, an
 * unmatched EndGC, HeapInfoGHC: Python's. */

static PyObject *A_CUR, *A_PENDING, *A_REQUEST, *A_CAPS, *A_STATS, *A_SYNC, *A_END, *S_PAR, *S_SEQ;

/* deriver.name is None: 1, is not: 0, error: -1 (*out: a new reference when 0). */
static int attr_none(PyObject *o, PyObject *name, PyObject **out)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        return -1;
    if (v == Py_None) {
        Py_DECREF(v);
        return 1;
    }
    if (out != NULL)
        *out = v;
    else
        Py_DECREF(v);
    return 0;
}

/* The gc point of collection c (gc.py's _point), appended to out: 1; 0 when
 * c holds anything but what a collection holds from well-formed events (ints,
 * None, a "par"/"seq" string, statistics of ints): Python makes that point,
 * and raises as it does; -1: an error. */
static PyObject *A_START, *A_REQUEST_T, *A_GENS, *A_COLLECTIONS, *S_GC, *F_PAUSE, *F_CAPS,
    *F_SYNC, *F_REQUEST, *T_GEN, *T_KIND, *S_MAJOR, *S_MINOR, *F_STATS[6], *F_BALANCED,
    *F_BALANCE;

static int int_or_none(PyObject *v)
{
    return v == Py_None || PyLong_CheckExact(v);
}

static int gc_point(PyObject *d, PyObject *c, PyObject *stats, PyObject *point_cls, PyObject *out)
{
    PyObject *names[5] = {A_START, A_END, A_CAPS, A_REQUEST_T, A_SYNC};
    PyObject *v[5] = {NULL, NULL, NULL, NULL, NULL};
    PyObject *request = NULL, *gens = NULL, *tags = NULL, *fields = NULL, *x = NULL;
    PyObject *own_stats = NULL;
    int rc = -1;
    for (int k = 0; k < 5; k++)
        if ((v[k] = PyObject_GetAttr(c, names[k])) == NULL)
            goto done;
    if ((request = PyObject_GetAttr(c, F_REQUEST)) == NULL || (gens = PyObject_GetAttr(d, A_GENS)) == NULL)
        goto done;
    if (stats == NULL) {
        if ((own_stats = PyObject_GetAttr(c, A_STATS)) == NULL)
            goto done;
        stats = own_stats;
    }
    rc = 0;
    if (!PyLong_CheckExact(v[0]) || !PyLong_CheckExact(v[1]) || !PyLong_CheckExact(v[2])
        || !int_or_none(v[3]) || !int_or_none(v[4]) || !int_or_none(gens)
        || !(request == Py_None || PyUnicode_CheckExact(request)))
        goto done;
    Py_ssize_t ns = 0;
    if (stats != Py_None) {
        if (!PyTuple_Check(stats) || (ns = PyTuple_GET_SIZE(stats)) < 8)
            goto done;
        for (Py_ssize_t k = 1; k < 8; k++)
            if (!PyLong_CheckExact(PyTuple_GET_ITEM(stats, k)))
                goto done;
        if (ns > 8 && !int_or_none(PyTuple_GET_ITEM(stats, 8)))
            goto done;
    }
    rc = -1;
    if ((tags = PyDict_New()) == NULL || (fields = PyDict_New()) == NULL)
        goto done;
    if ((x = PyNumber_Subtract(v[1], v[0])) == NULL || PyDict_SetItem(fields, F_PAUSE, x) < 0)
        goto done;
    Py_CLEAR(x);
    if (PyDict_SetItem(fields, F_CAPS, v[2]) < 0)
        goto done;
    if (v[3] != Py_None && v[4] != Py_None) {
        if ((x = PyNumber_Subtract(v[4], v[3])) == NULL || PyDict_SetItem(fields, F_SYNC, x) < 0)
            goto done;
        Py_CLEAR(x);
    }
    if (request != Py_None && PyDict_SetItem(fields, F_REQUEST, request) < 0)
        goto done;
    if (stats != Py_None) {
        PyObject *gen = PyTuple_GET_ITEM(stats, 1);
        if ((x = PyObject_Str(gen)) == NULL || PyDict_SetItem(tags, T_GEN, x) < 0)
            goto done;
        Py_CLEAR(x);
        if (gens != Py_None) {
            PyObject *one = PyLong_FromLong(1);
            if (one == NULL)
                goto done;
            x = PyNumber_Subtract(gens, one);
            Py_DECREF(one);
            if (x == NULL)
                goto done;
            int major = PyObject_RichCompareBool(gen, x, Py_EQ);
            Py_CLEAR(x);
            if (major < 0 || PyDict_SetItem(tags, T_KIND, major ? S_MAJOR : S_MINOR) < 0)
                goto done;
        }
        for (int k = 0; k < 6; k++)
            if (PyDict_SetItem(fields, F_STATS[k], PyTuple_GET_ITEM(stats, k + 2)) < 0)
                goto done;
        PyObject *balanced = ns > 8 ? PyTuple_GET_ITEM(stats, 8) : Py_None;
        if (balanced != Py_None) {
            if (PyDict_SetItem(fields, F_BALANCED, balanced) < 0)
                goto done;
            PyObject *n = PyTuple_GET_ITEM(stats, 5), *tot = PyTuple_GET_ITEM(stats, 7);
            PyObject *one = PyLong_FromLong(1), *zero = PyLong_FromLong(0);
            int many = one && zero ? PyObject_RichCompareBool(n, one, Py_GT) : -1;
            int some = many > 0 ? PyObject_RichCompareBool(tot, zero, Py_GT) : many;
            Py_XDECREF(one);
            Py_XDECREF(zero);
            if (some < 0)
                goto done;
            if (some) {
                if ((x = PyNumber_TrueDivide(balanced, tot)) == NULL
                    || PyDict_SetItem(fields, F_BALANCE, x) < 0)
                    goto done;
                Py_CLEAR(x);
            }
        }
    }
    /* the count first, as _point does */
    PyObject *count = PyObject_GetAttr(d, A_COLLECTIONS);
    if (count == NULL)
        goto done;
    PyObject *one = PyLong_FromLong(1);
    x = one ? PyNumber_Add(count, one) : NULL;
    Py_DECREF(count);
    Py_XDECREF(one);
    if (x == NULL || PyObject_SetAttr(d, A_COLLECTIONS, x) < 0)
        goto done;
    Py_CLEAR(x);
    if ((x = PyObject_CallFunctionObjArgs(point_cls, S_GC, tags, fields, v[0], NULL)) == NULL
        || PyList_Append(out, x) < 0)
        goto done;
    rc = 1;
done:
    for (int k = 0; k < 5; k++)
        Py_XDECREF(v[k]);
    Py_XDECREF(request);
    Py_XDECREF(gens);
    Py_XDECREF(own_stats);
    Py_XDECREF(tags);
    Py_XDECREF(fields);
    Py_XDECREF(x);
    return rc;
}

static PyObject *gc(PyObject *self, PyObject *args)
{
    PyObject *d, *events, *in_gc, *cls, *out, *point_cls;
    Py_ssize_t i;
    long start_t, end_t, stats_t, sync_t, par_t, seq_t;
    if (!PyArg_ParseTuple(args, "OOnO!O(llllll)O!O", &d, &events, &i, &PyDict_Type, &in_gc, &cls,
                          &start_t, &end_t, &stats_t, &sync_t, &par_t, &seq_t, &PyList_Type,
                          &out, &point_cls))
        return NULL;
    PyObject *evs = seq(events);
    if (evs == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(evs);
    PyObject **items = PySequence_Fast_ITEMS(evs);
    PyObject *cur = NULL;  /* a reference while held */
    for (; i < n; i++) {
        long ty;
        long long t;
        PyObject *cap, *fields;
        if (!unpack(items[i], &ty, &t, &cap, &fields))
            break;
        PyObject *ot = PyTuple_GET_ITEM(items[i], 2);
        int r;
        Py_CLEAR(cur);
        if (ty == start_t) {
            if (cap == Py_None)
                break;
            if (PyDict_GET_SIZE(in_gc) == 0) {  /* a new collection */
                PyObject *pending = NULL;
                if ((r = attr_none(d, A_PENDING, &pending)) < 0)
                    goto error;
                if (!r) {  /* the pending one's point first */
                    r = gc_point(d, pending, NULL, point_cls, out);
                    Py_DECREF(pending);
                    if (r < 0)
                        goto error;
                    if (!r)
                        break;
                    if (PyObject_SetAttr(d, A_PENDING, Py_None) < 0)
                        goto error;
                }
                PyObject *request = PyObject_GetAttr(d, A_REQUEST);
                if (request == NULL)
                    goto error;
                cur = PyObject_CallFunctionObjArgs(cls, ot, request, NULL);
                Py_DECREF(request);
                if (cur == NULL || PyObject_SetAttr(d, A_CUR, cur) < 0
                    || PyObject_SetAttr(d, A_REQUEST, Py_None) < 0)
                    goto error;
            } else {
                if ((r = attr_none(d, A_CUR, &cur)) < 0)
                    goto error;
                if (r)
                    break;  /* (cannot be: capabilities in GC, so a collection open) */
            }
            int has = PyDict_Contains(in_gc, cap);
            if (has < 0)
                goto error;
            if (!has) {
                PyObject *caps = PyObject_GetAttr(cur, A_CAPS);
                if (caps == NULL)
                    goto error;
                long long c;
                int ok = as_i64(caps, &c) && c < LLONG_MAX;
                Py_DECREF(caps);
                if (!ok)
                    break;  /* (never: a collection counts its caps from 0) */
                PyObject *oc = PyLong_FromLongLong(c + 1);
                if (oc == NULL)
                    goto error;
                int rc = PyDict_SetItem(in_gc, cap, ot);
                if (rc == 0)
                    rc = PyObject_SetAttr(cur, A_CAPS, oc);
                Py_DECREF(oc);
                if (rc < 0)
                    goto error;
            }
        } else if (ty == end_t) {
            if (cap == Py_None)
                break;
            int has = PyDict_Contains(in_gc, cap);
            if (has < 0)
                goto error;
            if (!has)
                break;  /* an unmatched end: Python counts it */
            if (PyDict_GET_SIZE(in_gc) >= 2) {  /* others still in it */
                if (PyDict_DelItem(in_gc, cap) < 0)
                    goto error;
                continue;
            }
            /* the last capability: the collection closes */
            if ((r = attr_none(d, A_CUR, &cur)) < 0)
                goto error;
            if (r)
                break;
            if ((r = attr_none(cur, A_STATS, NULL)) < 0)
                goto error;
            if (!r) {  /* it has its statistics: its point */
                if (PyObject_SetAttr(cur, A_END, ot) < 0 || (r = gc_point(d, cur, NULL, point_cls, out)) < 0)
                    goto error;
                if (!r)
                    break;
                if (PyDict_DelItem(in_gc, cap) < 0 || PyObject_SetAttr(d, A_CUR, Py_None) < 0)
                    goto error;
                continue;
            }
            if (PyDict_DelItem(in_gc, cap) < 0 || PyObject_SetAttr(d, A_CUR, Py_None) < 0
                || PyObject_SetAttr(cur, A_END, ot) < 0 || PyObject_SetAttr(d, A_PENDING, cur) < 0)
                goto error;
        } else if (ty == stats_t) {
            if (!PyTuple_Check(fields))
                break;
            if (PyTuple_GET_SIZE(fields) < 8)
                continue;  /* (a shorter layout: skipped, as there) */
            if ((r = attr_none(d, A_CUR, &cur)) < 0)
                goto error;
            if (r) {  /* the pending collection's point, or a lone one (Python's) */
                PyObject *pending = NULL;
                if ((r = attr_none(d, A_PENDING, &pending)) < 0)
                    goto error;
                if (r)
                    break;
                r = gc_point(d, pending, fields, point_cls, out);
                if (r > 0 && (PyObject_SetAttr(pending, A_STATS, fields) < 0
                              || PyObject_SetAttr(d, A_PENDING, Py_None) < 0))
                    r = -1;
                Py_DECREF(pending);
                if (r < 0)
                    goto error;
                if (!r)
                    break;
                continue;
            }
            if ((r = attr_none(cur, A_STATS, NULL)) < 0)
                goto error;
            if (!r)
                break;
            if (PyObject_SetAttr(cur, A_STATS, fields) < 0)
                goto error;
        } else if (ty == sync_t) {
            if ((r = attr_none(d, A_CUR, &cur)) < 0)
                goto error;
            if (r)
                continue;
            if ((r = attr_none(cur, A_SYNC, NULL)) < 0)
                goto error;
            if (r && PyObject_SetAttr(cur, A_SYNC, ot) < 0)
                goto error;
        } else if (ty == par_t || ty == seq_t) {
            if ((r = attr_none(d, A_CUR, &cur)) < 0)
                goto error;
            if (r) {
                PyObject *req = PyTuple_Pack(2, ot, ty == par_t ? S_PAR : S_SEQ);
                if (req == NULL)
                    goto error;
                int rc = PyObject_SetAttr(d, A_REQUEST, req);
                Py_DECREF(req);
                if (rc < 0)
                    goto error;
            }
        } else {
            break;  /* HeapInfoGHC, or another: Python's */
        }
    }
    Py_XDECREF(cur);
    Py_DECREF(evs);
    return PyLong_FromSsize_t(i);
error:
    Py_XDECREF(cur);
    Py_DECREF(evs);
    return NULL;
}

/* -- routing ------------------------------------------------------------------
 * route(items, lo, hi, table): for each item of items[lo:hi], call each of
 * table[item[0]] with it (item[0] is an event's type id, or -1, the last entry,
 * for a late one): the pipeline's routing of released events into the
 * derivers' buckets (pipeline.py's _dispatch). */

static PyObject *route(PyObject *self, PyObject *args)
{
    PyObject *items, *table;
    Py_ssize_t lo, hi;
    if (!PyArg_ParseTuple(args, "O!nnO!", &PyList_Type, &items, &lo, &hi, &PyList_Type, &table))
        return NULL;
    Py_ssize_t n_table = PyList_GET_SIZE(table);
    Py_INCREF(items);
    Py_INCREF(table);
    for (Py_ssize_t i = lo; i < hi && i < PyList_GET_SIZE(items); i++) {
        PyObject *ev = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(ev) || PyTuple_GET_SIZE(ev) < 1) {
            PyErr_SetString(PyExc_TypeError, "route: an item is not an event");
            goto error;
        }
        Py_ssize_t ty = PyLong_AsSsize_t(PyTuple_GET_ITEM(ev, 0));
        if (ty == -1 && PyErr_Occurred())
            goto error;
        if (ty < 0)
            ty += n_table;
        if (ty < 0 || ty >= n_table) {
            PyErr_SetString(PyExc_IndexError, "route: type id out of the table");
            goto error;
        }
        PyObject *calls = PyList_GET_ITEM(table, ty);
        if (!PyTuple_Check(calls)) {
            PyErr_SetString(PyExc_TypeError, "route: a table entry is not a tuple");
            goto error;
        }
        Py_ssize_t k = PyTuple_GET_SIZE(calls);
        if (k == 0)
            continue;
        Py_INCREF(ev);
        Py_INCREF(calls);
        for (Py_ssize_t j = 0; j < k; j++) {
            PyObject *r = PyObject_CallOneArg(PyTuple_GET_ITEM(calls, j), ev);
            if (r == NULL) {
                Py_DECREF(calls);
                Py_DECREF(ev);
                goto error;
            }
            Py_DECREF(r);
        }
        Py_DECREF(calls);
        Py_DECREF(ev);
    }
    Py_DECREF(items);
    Py_DECREF(table);
    Py_RETURN_NONE;
error:
    Py_DECREF(items);
    Py_DECREF(table);
    return NULL;
}

/* -- line protocol ------------------------------------------------------------
 * lines(items, point_type, heads, keys, head, key, slow) -> list of str: each
 * Point of ``items`` (exactly ``point_type``) as Point.to_line() writes it, a
 * str kept as it is, anything else ``item.to_line()``.  The escaped head
 * ("measurement,tag=value,...") comes from ``heads``, keyed by (measurement,
 * *tags.items()), else from ``head(key, measurement, tags)`` (which caches it);
 * an escaped field key from ``keys``, else ``key(k)``.  Ints in 64 bits and
 * floats are written here, None is left out, every other value is
 * ``slow(value)``'s text. */

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
} Buf;

static int buf_add(Buf *b, const char *s, Py_ssize_t n)
{
    if (b->len + n > b->cap) {
        Py_ssize_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *nb = PyMem_Realloc(b->buf, cap);
        if (nb == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    return 0;
}

/* A str's UTF-8 (0: it has none, a lone surrogate: the item is left to Python). */
static int buf_str(Buf *b, PyObject *s)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL) {
        PyErr_Clear();
        return 0;
    }
    return buf_add(b, u, n) < 0 ? -1 : 1;
}

static PyObject *A_MEASUREMENT, *A_TAGS, *A_FIELDS, *A_TIME;

/* One point's line into b: 1 done, 0 left to Python, -1 error. */
static int encode(Buf *b, PyObject *p, PyObject *heads, PyObject *keys, PyObject *head_fn,
                  PyObject *key_fn, PyObject *slow)
{
    int rc = -1;
    PyObject *m = NULL, *tags = NULL, *fields = NULL, *t = NULL, *key = NULL, *head = NULL;
    if ((m = PyObject_GetAttr(p, A_MEASUREMENT)) == NULL || (tags = PyObject_GetAttr(p, A_TAGS)) == NULL
        || (fields = PyObject_GetAttr(p, A_FIELDS)) == NULL || (t = PyObject_GetAttr(p, A_TIME)) == NULL)
        goto done;
    if (!PyDict_CheckExact(tags) || !PyDict_CheckExact(fields) || !PyLong_CheckExact(t)) {
        rc = 0;
        goto done;
    }
    key = PyTuple_New(1 + PyDict_GET_SIZE(tags));
    if (key == NULL)
        goto done;
    Py_INCREF(m);
    PyTuple_SET_ITEM(key, 0, m);
    Py_ssize_t pos = 0, k = 1;
    PyObject *tk, *tv;
    while (PyDict_Next(tags, &pos, &tk, &tv)) {
        PyObject *item = PyTuple_Pack(2, tk, tv);
        if (item == NULL)
            goto done;
        PyTuple_SET_ITEM(key, k++, item);
    }
    head = PyDict_GetItemWithError(heads, key);
    if (head != NULL) {
        Py_INCREF(head);
    } else {
        if (PyErr_Occurred())
            goto done;
        head = PyObject_CallFunctionObjArgs(head_fn, key, m, tags, NULL);
        if (head == NULL)
            goto done;
    }
    if (!PyUnicode_CheckExact(head)) {
        rc = 0;
        goto done;
    }
    Py_ssize_t start = b->len;
    int r = buf_str(b, head);
    if (r <= 0) {
        rc = r;
        goto done;
    }
    if (buf_add(b, " ", 1) < 0)
        goto done;
    pos = 0;
    int first = 1;
    PyObject *fk, *fv;
    while (PyDict_Next(fields, &pos, &fk, &fv)) {
        if (fv == Py_None)
            continue;
        PyObject *ek = PyDict_GetItemWithError(keys, fk);
        if (ek != NULL) {
            Py_INCREF(ek);
        } else {
            if (PyErr_Occurred())
                goto done;
            ek = PyObject_CallOneArg(key_fn, fk);
            if (ek == NULL)
                goto done;
        }
        if (!first && buf_add(b, ",", 1) < 0) {
            Py_DECREF(ek);
            goto done;
        }
        first = 0;
        r = PyUnicode_CheckExact(ek) ? buf_str(b, ek) : 0;
        Py_DECREF(ek);
        if (r <= 0) {
            rc = r;
            b->len = start;
            goto done;
        }
        if (buf_add(b, "=", 1) < 0)
            goto done;
        long long v;
        char num[32];
        if (PyLong_CheckExact(fv) && as_i64(fv, &v)) {
            int n = snprintf(num, sizeof num, "%lldi", v);
            if (buf_add(b, num, n) < 0)
                goto done;
            continue;
        }
        if (fv == Py_True || fv == Py_False) {
            if (buf_add(b, fv == Py_True ? "true" : "false", fv == Py_True ? 4 : 5) < 0)
                goto done;
            continue;
        }
        if (PyUnicode_CheckExact(fv)) {  /* quoted, with " and \ escaped */
            Py_ssize_t sn;
            const char *u = PyUnicode_AsUTF8AndSize(fv, &sn);
            if (u == NULL) {
                PyErr_Clear();
                rc = 0;
                b->len = start;
                goto done;
            }
            if (buf_add(b, "\"", 1) < 0)
                goto done;
            Py_ssize_t from = 0;
            for (Py_ssize_t j = 0; j < sn; j++) {
                if (u[j] == '"' || u[j] == '\\') {
                    if (buf_add(b, u + from, j - from) < 0 || buf_add(b, "\\", 1) < 0)
                        goto done;
                    from = j;
                }
            }
            if (buf_add(b, u + from, sn - from) < 0 || buf_add(b, "\"", 1) < 0)
                goto done;
            continue;
        }
        PyObject *text = PyFloat_CheckExact(fv) ? PyObject_Repr(fv) : PyObject_CallOneArg(slow, fv);
        if (text == NULL)
            goto done;
        r = PyUnicode_CheckExact(text) ? buf_str(b, text) : 0;
        Py_DECREF(text);
        if (r <= 0) {
            rc = r;
            b->len = start;
            goto done;
        }
    }
    long long tv64;
    if (!as_i64(t, &tv64)) {
        rc = 0;
        b->len = start;
        goto done;
    }
    char num[32];
    int n = snprintf(num, sizeof num, " %lld", tv64);
    if (buf_add(b, num, n) < 0)
        goto done;
    rc = 1;
done:
    Py_XDECREF(m);
    Py_XDECREF(tags);
    Py_XDECREF(fields);
    Py_XDECREF(t);
    Py_XDECREF(key);
    Py_XDECREF(head);
    return rc;
}

static PyObject *lines(PyObject *self, PyObject *args)
{
    PyObject *items, *ptype, *heads, *keys, *head_fn, *key_fn, *slow;
    if (!PyArg_ParseTuple(args, "O!OO!O!OOO", &PyList_Type, &items, &ptype, &PyDict_Type, &heads,
                          &PyDict_Type, &keys, &head_fn, &key_fn, &slow))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    Buf b = {NULL, 0, 0};
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i), *line = NULL;
        if (PyUnicode_Check(item)) {
            Py_INCREF(item);
            line = item;
        } else {
            int rc = 0;
            b.len = 0;
            Py_INCREF(item);
            if ((PyObject *)Py_TYPE(item) == ptype)
                rc = encode(&b, item, heads, keys, head_fn, key_fn, slow);
            if (rc > 0)
                line = PyUnicode_DecodeUTF8(b.buf, b.len, "strict");
            else if (rc == 0)
                line = PyObject_CallMethod(item, "to_line", NULL);
            Py_DECREF(item);
        }
        if (line == NULL) {
            PyMem_Free(b.buf);
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, line);
    }
    PyMem_Free(b.buf);
    return out;
}

/* types(items) -> set: {item[0] for item in items}, the type ids of a batch of
   events in one pass: ids from 0 to 65535 (the eventlog's) are gathered in a
   bit map first; anything else goes to the set as it is. */
static PyObject *types(PyObject *self, PyObject *args)
{
    PyObject *items;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &items))
        return NULL;
    PyObject *out = PySet_New(NULL);
    if (out == NULL)
        return NULL;
    uint64_t seen[1024] = {0};
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i), *ty;
        if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) > 0) {
            ty = PyTuple_GET_ITEM(item, 0);
            if (PyLong_CheckExact(ty)) {
                int overflow;
                long v = PyLong_AsLongAndOverflow(ty, &overflow);
                if (!overflow && v >= 0 && v < 65536) {
                    seen[v >> 6] |= (uint64_t)1 << (v & 63);
                    continue;
                }
            }
            Py_INCREF(ty);
        } else {
            ty = PySequence_GetItem(item, 0);
            if (ty == NULL) {
                Py_DECREF(out);
                return NULL;
            }
        }
        int rc = PySet_Add(out, ty);
        Py_DECREF(ty);
        if (rc < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    for (long w = 0; w < 1024; w++) {
        for (uint64_t bits = seen[w]; bits; bits &= bits - 1) {
            PyObject *ty = PyLong_FromLong(w * 64 + __builtin_ctzll(bits));
            if (ty == NULL || PySet_Add(out, ty) < 0) {
                Py_XDECREF(ty);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(ty);
        }
    }
    return out;
}

/* sort_by_time(items) -> bool: sorts the list in place by item[2] (an event's
   time, a _Late item's sort key), stably, as items.sort(key=itemgetter(2))
   would; False, and the list untouched, when an item is not a tuple of three
   or more with an int from -2**63 to 2**63-1 there (the caller sorts then).
   Events arrive as runs in time order (a block of one capability), so this is
   a natural merge sort: find the runs, merge them pairwise (ties: the left
   run first), then put the items in their new order.  Memory: 16 bytes an
   item, about what list.sort with a key takes. */
static PyObject *sort_by_time(PyObject *self, PyObject *args)
{
    PyObject *list;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &list))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(list);
    if (n < 2)
        Py_RETURN_TRUE;
    if ((size_t)n > UINT32_MAX)
        Py_RETURN_FALSE;
    int64_t *keys = PyMem_Malloc((size_t)n * sizeof(int64_t));
    uint32_t *a = PyMem_Malloc((size_t)n * sizeof(uint32_t));
    uint32_t *b = PyMem_Malloc((size_t)n * sizeof(uint32_t));
    if (keys == NULL || a == NULL || b == NULL) {
        PyMem_Free(keys);
        PyMem_Free(a);
        PyMem_Free(b);
        return PyErr_NoMemory();
    }
    PyObject **items = ((PyListObject *)list)->ob_item;
    int sorted = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = items[i];
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 3
            || !PyLong_CheckExact(PyTuple_GET_ITEM(item, 2)))
            goto refuse;
        int overflow;
        long long k = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(item, 2), &overflow);
        if (overflow)
            goto refuse;
        keys[i] = k;
        a[i] = (uint32_t)i;
        if (i && k < keys[i - 1])
            sorted = 0;
    }
    if (sorted)
        goto done;
    /* runs: a[] holds indices; merge runs of src into dst until one is left */
    uint32_t *src = a, *dst = b;
    for (;;) {
        Py_ssize_t lo = 0, runs = 0;
        while (lo < n) {
            Py_ssize_t mid = lo + 1;
            while (mid < n && keys[src[mid]] >= keys[src[mid - 1]])
                mid++;
            Py_ssize_t hi = mid;
            if (hi < n) {
                hi++;
                while (hi < n && keys[src[hi]] >= keys[src[hi - 1]])
                    hi++;
            }
            Py_ssize_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi)
                dst[o++] = keys[src[j]] < keys[src[i]] ? src[j++] : src[i++];
            while (i < mid)
                dst[o++] = src[i++];
            while (j < hi)
                dst[o++] = src[j++];
            runs++;
            lo = hi;
        }
        uint32_t *t = src;
        src = dst;
        dst = t;
        if (runs <= 1)
            break;
    }
    /* the items in their new order (keys' memory holds the old order) */
    PyObject **old = (PyObject **)keys;
    memcpy(old, items, (size_t)n * sizeof(PyObject *));
    for (Py_ssize_t i = 0; i < n; i++)
        items[i] = old[src[i]];
done:
    PyMem_Free(keys);
    PyMem_Free(a);
    PyMem_Free(b);
    Py_RETURN_TRUE;
refuse:
    PyErr_Clear();
    PyMem_Free(keys);
    PyMem_Free(a);
    PyMem_Free(b);
    Py_RETURN_FALSE;
}

/* -- the live merge ------------------------------------------------------------
 * merge_live(events, i, held, latest, min_stream, state, (block_marker, startup,
 * cap_create)) -> index of the first
 * event left to Python (order.py's Merge._push_live, its per-event loop for
 * the common event: not a block marker, Startup or CapCreate, not late, of a
 * stream already known, moving neither the watermark's stream nor past the
 * time its stream goes idle, and no memory check that finds too much held).
 * ``state`` is a list of ints, read and written back (see order.py's _LIVE_*):
 * frontier, newest, held min (None: nothing held), jump_at, countdown,
 * next_low, idle_at, watermark (read and written); idle, trusted_at, max_lag,
 * slack, max_gap, check_every, max_held (read).  A value beyond 64 bits
 * (order.py's infinities) is taken as the nearest 64-bit one; one made
 * infinite here is written back as ``POS_INF`` (1 << 80), which every event
 * time compares with as order.py's own.  Events at or past 2**62 go to Python.
 * Every check on an event comes before any change for it. */

enum { L_FRONTIER, L_NEWEST, L_HELD_MIN, L_JUMP_AT, L_COUNTDOWN, L_NEXT_LOW, L_IDLE_AT,
       L_WATERMARK, L_IDLE, L_TRUSTED_AT, L_MAX_LAG, L_SLACK, L_MAX_GAP, L_CHECK_EVERY,
       L_MAX_HELD, L_N };

#define L_INF LLONG_MAX
#define L_TIME_LIMIT (1LL << 62)

static PyObject *POS_INF;

/* An int, clamped to 64 bits; 0 (an error set) if not an int. */
static inline int clamp_i64(PyObject *o, long long *out)
{
    if (!PyLong_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "merge_live: the state holds ints");
        return 0;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred())
        return 0;
    *out = overflow > 0 ? LLONG_MAX : overflow < 0 ? LLONG_MIN : v;
    return 1;
}

/* a + b, infinite (L_INF) if either is or if it does not fit */
static inline long long sat_add(long long a, long long b)
{
    long long r;
    if (a == L_INF || b == L_INF || __builtin_add_overflow(a, b, &r))
        return L_INF;
    return r;
}

static int put_state(PyObject *st, Py_ssize_t k, long long v, int inf_ok)
{
    PyObject *o;
    if (inf_ok && v == L_INF) {
        o = POS_INF;
        Py_INCREF(o);
    } else if ((o = PyLong_FromLongLong(v)) == NULL) {
        return -1;
    }
    return PyList_SetItem(st, k, o);  /* steals o */
}

static PyObject *merge_live(PyObject *self, PyObject *args)
{
    PyObject *events, *held, *latest, *min_stream, *st;
    Py_ssize_t i;
    long block_t, startup_t, cap_create_t;
    if (!PyArg_ParseTuple(args, "O!nO!O!OO!(lll)", &PyList_Type, &events, &i, &PyList_Type, &held,
                          &PyDict_Type, &latest, &min_stream, &PyList_Type, &st, &block_t,
                          &startup_t, &cap_create_t))
        return NULL;
    if (PyList_GET_SIZE(st) != L_N) {
        PyErr_SetString(PyExc_ValueError, "merge_live: a state of the wrong length");
        return NULL;
    }
    long long v[L_N];
    int has_min = PyList_GET_ITEM(st, L_HELD_MIN) != Py_None;
    for (int k = 0; k < L_N; k++) {
        if (k == L_HELD_MIN && !has_min) {
            v[k] = 0;
            continue;
        }
        if (!clamp_i64(PyList_GET_ITEM(st, k), &v[k]))
            return NULL;
    }
    long long frontier = v[L_FRONTIER], newest = v[L_NEWEST], held_min = v[L_HELD_MIN];
    long long jump_at = v[L_JUMP_AT], countdown = v[L_COUNTDOWN], next_low = v[L_NEXT_LOW];
    long long idle_at = v[L_IDLE_AT], watermark = v[L_WATERMARK], idle = v[L_IDLE];
    long long trusted_at = v[L_TRUSTED_AT], max_lag = v[L_MAX_LAG], slack = v[L_SLACK];
    long long max_gap = v[L_MAX_GAP], check_every = v[L_CHECK_EVERY], max_held = v[L_MAX_HELD];
    Py_ssize_t start = i;
    Py_INCREF(events);
    Py_INCREF(held);
    Py_INCREF(latest);
    for (; i < PyList_GET_SIZE(events); i++) {
        PyObject *ev = PyList_GET_ITEM(events, i), *cap, *fields;
        long ty;
        long long t, old;
        if (!unpack(ev, &ty, &t, &cap, &fields) || t >= L_TIME_LIMIT || t > jump_at
            || ty == block_t || ty == startup_t || ty == cap_create_t || t < frontier)
            break;
        PyObject *o_old = PyDict_GetItemWithError(latest, cap);  /* borrowed */
        if (o_old == NULL) {
            if (PyErr_Occurred())
                goto error;
            break;                                   /* a new stream */
        }
        if (!as_i64(o_old, &old))
            break;
        long long n_newest = t > newest ? t : newest;
        long long n_watermark = watermark, n_idle_at = idle_at;
        if (t > old) {
            int is_min = PyObject_RichCompareBool(cap, min_stream, Py_EQ);
            if (is_min < 0)
                goto error;
            if (is_min) {
                if (t > next_low)
                    break;                           /* no longer the oldest */
                n_watermark = t;
                n_idle_at = sat_add(t, idle);
            } else if (t < next_low && sat_add(t, idle) >= n_newest) {
                break;                               /* idle, speaks again */
            }
        }
        if (n_newest > n_idle_at)
            break;                                   /* the watermark's stream went idle */
        long long n_countdown = countdown - 1;
        if (n_countdown <= 0) {
            if (PyList_GET_SIZE(held) + 1 > max_held)
                break;                               /* the memory bound */
            n_countdown = check_every;
        }
        /* taken: every change for it from here */
        if (PyList_Append(held, ev) < 0)
            goto error;
        if (!has_min || t < held_min) {
            held_min = t;
            has_min = 1;
        }
        if (t > old && PyDict_SetItem(latest, cap, PyTuple_GET_ITEM(ev, 2)) < 0)
            goto error;
        if (t > newest)
            jump_at = sat_add(t, max_gap);
        newest = n_newest;
        watermark = n_watermark;
        idle_at = n_idle_at;
        countdown = n_countdown;
        long long f = newest - max_lag, w;
        if (newest >= trusted_at && !__builtin_sub_overflow(watermark, slack, &w) && w > f)
            f = w;
        if (f > frontier)
            frontier = f;
    }
    if (i > start) {
        if (put_state(st, L_FRONTIER, frontier, 0) < 0 || put_state(st, L_NEWEST, newest, 0) < 0
            || put_state(st, L_HELD_MIN, held_min, 0) < 0
            || put_state(st, L_JUMP_AT, jump_at, 1) < 0
            || put_state(st, L_COUNTDOWN, countdown, 0) < 0
            || put_state(st, L_IDLE_AT, idle_at, 1) < 0
            || put_state(st, L_WATERMARK, watermark, 0) < 0)
            goto error;
    }
    Py_DECREF(events);
    Py_DECREF(held);
    Py_DECREF(latest);
    return PyLong_FromSsize_t(i);
error:
    Py_DECREF(events);
    Py_DECREF(held);
    Py_DECREF(latest);
    return NULL;
}

static PyMethodDef methods[] = {
    {"threads", threads, METH_VARARGS, "threads deriver: RunThread/StopThread/CreateThread loop."},
    {"capability", capability, METH_VARARGS, "capability deriver: state transition loop."},
    {"spans", spans, METH_VARARGS, "spans deriver: START/STOP message loop."},
    {"markers", markers, METH_VARARGS, "markers deriver: user message count."},
    {"heap", heap, METH_VARARGS, "heap deriver: allocation and gauges."},
    {"lines", lines, METH_VARARGS, "points as InfluxDB line protocol."},
    {"route", route, METH_VARARGS, "call table[item[0]]'s callables with each item."},
    {"gc", gc, METH_VARARGS, "gc deriver: a collection's life and its point."},
    {"types", types, METH_VARARGS, "the set of item[0] over a list of events."},
    {"sort_by_time", sort_by_time, METH_VARARGS, "stable in-place sort of a list by item[2]."},
    {"merge_live", merge_live, METH_VARARGS, "the live merge's loop for the common event."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_core", "C per-event loops of the derivers.", -1, methods,
};

PyMODINIT_FUNC PyInit__core(void)
{
    START_PREFIX = PyUnicode_InternFromString("START ");
    STOP_PREFIX = PyUnicode_InternFromString("STOP ");
    A_MEASUREMENT = PyUnicode_InternFromString("measurement");
    A_TAGS = PyUnicode_InternFromString("tags");
    A_FIELDS = PyUnicode_InternFromString("fields");
    A_TIME = PyUnicode_InternFromString("time");
    if (A_MEASUREMENT == NULL || A_TAGS == NULL || A_FIELDS == NULL || A_TIME == NULL)
        return NULL;
    A_CUR = PyUnicode_InternFromString("_cur");
    A_PENDING = PyUnicode_InternFromString("_pending");
    A_REQUEST = PyUnicode_InternFromString("_request");
    A_CAPS = PyUnicode_InternFromString("caps");
    A_STATS = PyUnicode_InternFromString("stats");
    A_SYNC = PyUnicode_InternFromString("sync_t");
    A_END = PyUnicode_InternFromString("end");
    A_START = PyUnicode_InternFromString("start");
    A_REQUEST_T = PyUnicode_InternFromString("request_t");
    A_GENS = PyUnicode_InternFromString("_gens");
    A_COLLECTIONS = PyUnicode_InternFromString("collections");
    S_GC = PyUnicode_InternFromString("gc");
    F_PAUSE = PyUnicode_InternFromString("pause_ns");
    F_CAPS = PyUnicode_InternFromString("caps");
    F_SYNC = PyUnicode_InternFromString("sync_ns");
    F_REQUEST = PyUnicode_InternFromString("request");
    T_GEN = PyUnicode_InternFromString("gen");
    T_KIND = PyUnicode_InternFromString("kind");
    S_MAJOR = PyUnicode_InternFromString("major");
    S_MINOR = PyUnicode_InternFromString("minor");
    F_BALANCED = PyUnicode_InternFromString("par_balanced_copied_bytes");
    F_BALANCE = PyUnicode_InternFromString("balance");
    static const char *stat_names[6] = {"copied_bytes", "slop_bytes", "frag_bytes", "par_threads",
                                        "par_max_copied_bytes", "par_tot_copied_bytes"};
    for (int k = 0; k < 6; k++)
        if ((F_STATS[k] = PyUnicode_InternFromString(stat_names[k])) == NULL)
            return NULL;
    if (A_START == NULL || A_REQUEST_T == NULL || A_GENS == NULL || A_COLLECTIONS == NULL
        || S_GC == NULL || F_PAUSE == NULL || F_CAPS == NULL || F_SYNC == NULL || F_REQUEST == NULL
        || T_GEN == NULL || T_KIND == NULL || S_MAJOR == NULL || S_MINOR == NULL
        || F_BALANCED == NULL || F_BALANCE == NULL)
        return NULL;
    S_PAR = PyUnicode_InternFromString("par");
    S_SEQ = PyUnicode_InternFromString("seq");
    if (START_PREFIX == NULL || STOP_PREFIX == NULL || A_CUR == NULL || A_PENDING == NULL
        || A_REQUEST == NULL || A_CAPS == NULL || A_STATS == NULL || A_SYNC == NULL || A_END == NULL
        || S_PAR == NULL || S_SEQ == NULL)
        return NULL;
    POS_INF = PyLong_FromString("1208925819614629174706176", NULL, 10);  /* 1 << 80 */
    if (POS_INF == NULL)
        return NULL;
    return PyModule_Create(&module);
}
