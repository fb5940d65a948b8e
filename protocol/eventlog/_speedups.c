/* The decoder's record loop in C: the same walk as Decoder._records_py, over
 * the same per-type table, building the same Event tuples.  Optional: when it
 * is not compiled, the pure Python loop runs instead. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

enum { K_STRUCT, K_VSTRUCT, K_EMPTY, K_READ, K_BLOCK, K_SKIP, K_UNKNOWN };
enum { ST_MORE = 0, ST_ENDED = 1, ST_UNDECLARED = 2, ST_SHORT_BLOCK = 3 };

static inline uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static inline int width(char c)
{
    switch (c) {
    case 'B': return 1;
    case 'H': return 2;
    case 'I': return 4;
    case 'Q': return 8;
    default: return -1;
    }
}

/* The payload fields of a fixed layout, given as a string of B/H/I/Q. */
static PyObject *fixed_fields(const unsigned char *p, const char *fmt, Py_ssize_t count)
{
    PyObject *t = PyTuple_New(count);
    if (t == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        int w = width(fmt[i]);
        PyObject *v = PyLong_FromUnsignedLongLong(be(p, w));
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
        p += w;
    }
    return t;
}

static Py_ssize_t fixed_size(const char *fmt, Py_ssize_t count)
{
    Py_ssize_t s = 0;
    for (Py_ssize_t i = 0; i < count; i++)
        s += width(fmt[i]);
    return s;
}

/* Events and their field tuples are made in the millions and cannot be part of
 * a reference cycle; keeping them out of the cyclic GC's young generation
 * saves most of its work.  A tuple stays tracked if it holds a tracked object. */
static void untrack_if_atomic(PyObject *t)
{
    if (!PyTuple_Check(t))
        return;
    Py_ssize_t count = PyTuple_GET_SIZE(t);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(t, i);
        if (PyObject_IS_GC(item) && PyObject_GC_IsTracked(item))
            return;
    }
    if (PyObject_GC_IsTracked(t))
        PyObject_GC_UnTrack(t);
}

static PyObject *make_event(PyTypeObject *etype, long tid, PyObject *name, uint64_t t,
                            PyObject *cap, PyObject *fields, int atomic)
{
    PyObject *ev = etype->tp_alloc(etype, 5);
    if (ev == NULL) {
        Py_DECREF(fields);
        return NULL;
    }
    PyObject *otid = PyLong_FromLong(tid);
    PyObject *ot = PyLong_FromUnsignedLongLong(t);
    if (otid == NULL || ot == NULL) {
        Py_XDECREF(otid);
        Py_XDECREF(ot);
        Py_DECREF(fields);
        Py_DECREF(ev);
        return NULL;
    }
    Py_INCREF(name);
    Py_INCREF(cap);
    PyTuple_SET_ITEM(ev, 0, otid);
    PyTuple_SET_ITEM(ev, 1, name);
    PyTuple_SET_ITEM(ev, 2, ot);
    PyTuple_SET_ITEM(ev, 3, cap);
    PyTuple_SET_ITEM(ev, 4, fields);
    if (atomic) {
        /* numbers, text and members of the decoder's enum tables only */
        if (PyObject_GC_IsTracked(fields))
            PyObject_GC_UnTrack(fields);
        PyObject_GC_UnTrack(ev);
    } else {
        untrack_if_atomic(fields);
        untrack_if_atomic(ev);
    }
    return ev;
}

/* records(buf, pos, table, block_end, block_cap, events, Event, unknown_name)
 * -> (pos, block_end, block_cap, status, need, partial_id, skipped) */
static PyObject *records(PyObject *self, PyObject *args)
{
    PyObject *bufobj, *table, *block_cap, *events, *etype_obj, *unknown;
    Py_ssize_t pos, block_end;
    if (!PyArg_ParseTuple(args, "OnO!nOO!O!U", &bufobj, &pos, &PyList_Type, &table, &block_end,
                          &block_cap, &PyList_Type, &events, &PyType_Type, &etype_obj, &unknown))
        return NULL;
    if (PyList_GET_SIZE(table) != 0x10000) {
        PyErr_SetString(PyExc_ValueError, "table must have 65536 entries");
        return NULL;
    }
    PyTypeObject *etype = (PyTypeObject *)etype_obj;
    Py_buffer view;
    if (PyObject_GetBuffer(bufobj, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *buf = view.buf;
    Py_ssize_t n = view.len;
    Py_INCREF(block_cap);
    int status = ST_MORE;
    Py_ssize_t need = 0;
    long partial = -1;
    Py_ssize_t skipped = 0; /* records of unwanted types, passed over */
    PyObject *result = NULL;

    for (;;) {
        if (pos + 10 > n) {
            if (pos + 2 > n) {
                need = pos + 2; /* the end marker needs only two bytes */
                break;
            }
            long tid = (long)be(buf + pos, 2);
            if (tid == 0xFFFF) {
                status = ST_ENDED;
                pos += 2;
                break;
            }
            partial = tid;
            need = pos + 10;
            break;
        }
        long tid = (long)be(buf + pos, 2);
        uint64_t t = be(buf + pos + 2, 8);
        PyObject *entry = PyList_GET_ITEM(table, tid);
        if (entry == Py_None) {
            if (tid == 0xFFFF) {
                status = ST_ENDED;
                pos += 2;
            } else {
                status = ST_UNDECLARED;
                partial = tid;
            }
            break;
        }
        PyObject *size_o = PyTuple_GET_ITEM(entry, 0);
        long kind = PyLong_AsLong(PyTuple_GET_ITEM(entry, 1));
        Py_ssize_t start, end;
        if (size_o == Py_None) {
            if (pos + 12 > n) {
                need = pos + 12;
                partial = tid;
                break;
            }
            start = pos + 12;
            end = start + (Py_ssize_t)be(buf + pos + 10, 2);
        } else {
            start = pos + 10;
            end = start + PyLong_AsSsize_t(size_o);
        }
        if (end > n) {
            need = end;
            partial = tid;
            break;
        }
        PyObject *name = PyTuple_GET_ITEM(entry, 4);
        PyObject *fields = NULL;
        if (kind == K_SKIP) {
            pos = end;
            skipped++;
            continue;
        }
        if (kind == K_STRUCT || kind == K_VSTRUCT || kind == K_BLOCK) {
            PyObject *fmt = PyTuple_GET_ITEM(entry, 5);
            const char *f = PyBytes_AS_STRING(fmt);
            Py_ssize_t count = PyBytes_GET_SIZE(fmt);
            if (end - start < fixed_size(f, count)) {
                if (kind == K_BLOCK) {
                    status = ST_SHORT_BLOCK;
                    partial = tid;
                    break;
                }
                name = unknown;
                fields = PyTuple_New(0);
            } else {
                fields = fixed_fields(buf + start, f, count);
                PyObject *native = PyTuple_GET_ITEM(entry, 6);
                if (fields != NULL && native != Py_None) {
                    /* (field index, enum table): swap the number for its member */
                    Py_ssize_t idx = PyLong_AsSsize_t(PyTuple_GET_ITEM(native, 0));
                    PyObject *tab = PyTuple_GET_ITEM(native, 1);
                    Py_ssize_t code = PyLong_AsSsize_t(PyTuple_GET_ITEM(fields, idx));
                    if (code >= 0 && code < PyTuple_GET_SIZE(tab) &&
                        PyTuple_GET_ITEM(tab, code) != Py_None) {
                        PyObject *member = PyTuple_GET_ITEM(tab, code);
                        Py_INCREF(member);
                        Py_DECREF(PyTuple_GET_ITEM(fields, idx));
                        PyTuple_SET_ITEM(fields, idx, member);
                    }
                } else if (fields != NULL && kind != K_BLOCK &&
                           PyTuple_GET_ITEM(entry, 3) != Py_None) {
                    PyObject *post = PyObject_CallOneArg(PyTuple_GET_ITEM(entry, 3), fields);
                    Py_DECREF(fields);
                    fields = post;
                }
            }
            if (fields == NULL)
                goto fail;
            if (kind == K_BLOCK) {
                Py_ssize_t bsize = (Py_ssize_t)be(buf + start, 4);
                long bcap = (long)be(buf + start + 12, 2);
                PyObject *cap = bcap == 0xFFFF ? Py_None : PyLong_FromLong(bcap);
                if (cap == NULL) {
                    Py_DECREF(fields);
                    goto fail;
                }
                if (cap == Py_None)
                    Py_INCREF(cap);
                Py_DECREF(block_cap);
                block_cap = cap;
                block_end = pos + bsize;
                if (PyObject_IsTrue(PyTuple_GET_ITEM(entry, 3))) {
                    PyObject *ev = make_event(etype, tid, name, t, block_cap, fields, 1);
                    if (ev == NULL || PyList_Append(events, ev) < 0) {
                        Py_XDECREF(ev);
                        goto fail;
                    }
                    Py_DECREF(ev);
                } else {
                    Py_DECREF(fields);
                }
                pos = end;
                continue;
            }
        } else if (kind == K_READ) {
            PyObject *native = PyTuple_GET_ITEM(entry, 6);
            long code = native == Py_None ? 0 : PyLong_AsLong(native);
            if (code == 1 || (code == 2 && end - start >= 4)) {
                /* text: the whole payload, or a u32 then the rest */
                Py_ssize_t skip = code == 2 ? 4 : 0;
                PyObject *txt = PyUnicode_DecodeUTF8((const char *)buf + start + skip,
                                                     end - start - skip, "replace");
                if (txt == NULL)
                    goto fail;
                if (code == 1) {
                    fields = PyTuple_Pack(1, txt);
                } else {
                    PyObject *id = PyLong_FromUnsignedLongLong(be(buf + start, 4));
                    fields = id == NULL ? NULL : PyTuple_Pack(2, id, txt);
                    Py_XDECREF(id);
                }
                Py_DECREF(txt);
            } else {
                fields = PyObject_CallFunction(PyTuple_GET_ITEM(entry, 2), "Onn", bufobj,
                                               start, end);
            }
            if (fields == NULL)
                goto fail;
        } else {
            fields = PyTuple_New(0);
            if (fields == NULL)
                goto fail;
        }
        int atomic = kind != K_READ || PyTuple_GET_ITEM(entry, 6) != Py_None;
        if (PyTuple_GET_ITEM(entry, 3) != Py_None && PyTuple_GET_ITEM(entry, 6) == Py_None)
            atomic = 0; /* a Python post function made these fields */
        PyObject *ev = make_event(etype, tid, name, t, pos < block_end ? block_cap : Py_None,
                                  fields, atomic);
        if (ev == NULL || PyList_Append(events, ev) < 0) {
            Py_XDECREF(ev);
            goto fail;
        }
        Py_DECREF(ev);
        pos = end;
    }
    result = Py_BuildValue("nnOnnln", pos, block_end, block_cap, (Py_ssize_t)status, need, partial,
                           skipped);
fail:
    Py_DECREF(block_cap);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"records", records, METH_VARARGS, "Decode the records of an eventlog buffer."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups", "C record loop of the eventlog decoder.", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
