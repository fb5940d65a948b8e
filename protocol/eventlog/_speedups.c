/* The decoder's record loop in C: the same walk as Decoder._records_py, over
 * the same per-type table, building the same Event tuples.  Optional: when it
 * is not compiled, the pure Python loop runs instead.
 *
 * Over 400 lines, one file: the loop and the checks of the table it walks
 * belong together (a C extension module is one translation unit here). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

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

/* One checked entry of the per-type table (see Decoder._build_table):
 * (size, kind, struct_or_reader, post_or_wanted, name, format, native). */
typedef struct {
    Py_ssize_t size;   /* payload bytes; -1: variable size */
    long kind;
    PyObject *read;    /* K_READ: the reader, called unless native says text */
    PyObject *post;    /* K_STRUCT/K_VSTRUCT: None or a function of the fields */
    PyObject *name;    /* str */
    const char *fmt;   /* B/H/I/Q letters of a fixed layout */
    Py_ssize_t count;  /* letters in fmt */
    Py_ssize_t fsize;  /* bytes the fixed layout reads */
    Py_ssize_t idx;    /* native enum lookup: field index, or -1 */
    const unsigned char *perm; /* native reorder: field i is the wire field perm[i]; or NULL */
    PyObject *tab;     /* native enum lookup: tuple of members (or None) by code */
    long text;         /* K_READ native: 0 (call read), 1 (text) or 2 (u32 + text) */
    int wanted;        /* K_BLOCK: return the marker as an event */
    int atomic;        /* fields hold numbers, text and enum members only */
} Entry;

#define CACHE_SLOTS 256

typedef struct {
    PyObject *entry; /* strong reference, or NULL */
    Entry e;
} Slot;

static int bad_entry(PyObject *exc, long tid, const char *what)
{
    PyErr_Format(exc, "table entry %ld: %s", tid, what);
    return -1;
}

/* An int item of the entry in [lo, hi], or an error naming the entry. */
static int entry_int(PyObject *o, long tid, const char *what, Py_ssize_t lo, Py_ssize_t hi,
                     Py_ssize_t *out)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "table entry %ld: %s must be an int, not %.100s", tid,
                     what, Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow || v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "table entry %ld: %s must be in %zd..%zd", tid, what, lo,
                     hi);
        return -1;
    }
    *out = (Py_ssize_t)v;
    return 0;
}

/* Check the shape of a table entry before any of it is used. */
static int read_entry(PyObject *entry, long tid, Entry *e)
{
    if (!PyTuple_Check(entry)) {
        PyErr_Format(PyExc_TypeError, "table entry %ld must be a tuple or None, not %.100s", tid,
                     Py_TYPE(entry)->tp_name);
        return -1;
    }
    if (PyTuple_GET_SIZE(entry) != 7) {
        PyErr_Format(PyExc_ValueError, "table entry %ld must have 7 items, not %zd", tid,
                     PyTuple_GET_SIZE(entry));
        return -1;
    }
    Py_ssize_t v;
    PyObject *size_o = PyTuple_GET_ITEM(entry, 0);
    if (size_o == Py_None)
        e->size = -1;
    else if (entry_int(size_o, tid, "size", 0, 0xFFFE, &e->size) < 0)
        return -1;
    if (entry_int(PyTuple_GET_ITEM(entry, 1), tid, "kind", K_STRUCT, K_UNKNOWN, &v) < 0)
        return -1;
    e->kind = (long)v;
    if (e->kind == K_SKIP)
        return 0;
    e->name = PyTuple_GET_ITEM(entry, 4);
    if (!PyUnicode_Check(e->name))
        return bad_entry(PyExc_TypeError, tid, "name must be a str");
    e->post = PyTuple_GET_ITEM(entry, 3);
    PyObject *native = PyTuple_GET_ITEM(entry, 6);
    e->idx = -1;
    e->perm = NULL;
    e->tab = NULL;
    e->text = 0;
    e->atomic = 1;
    if (e->kind == K_STRUCT || e->kind == K_VSTRUCT || e->kind == K_BLOCK) {
        PyObject *fmt = PyTuple_GET_ITEM(entry, 5);
        if (!PyBytes_Check(fmt))
            return bad_entry(PyExc_TypeError, tid, "format must be bytes");
        e->fmt = PyBytes_AS_STRING(fmt);
        e->count = PyBytes_GET_SIZE(fmt);
        e->fsize = 0;
        for (Py_ssize_t i = 0; i < e->count; i++) {
            int w = width(e->fmt[i]);
            if (w < 0)
                return bad_entry(PyExc_ValueError, tid, "format letters must be B, H, I or Q");
            e->fsize += w;
        }
        if (e->kind == K_BLOCK) {
            /* the loop reads block_size (u32) at 0 and cap (u16) at 12 */
            if (e->count < 3 || memcmp(e->fmt, "IQH", 3) != 0)
                return bad_entry(PyExc_ValueError, tid, "a block marker's format must begin IQH");
            int wanted = PyObject_IsTrue(e->post);
            if (wanted < 0)
                return -1;
            e->wanted = wanted;
            return 0;
        }
        if (PyBytes_Check(native)) {
            /* the fields in another order: a permutation of the layout's */
            if (PyBytes_GET_SIZE(native) != e->count || e->count > 64)
                return bad_entry(PyExc_ValueError, tid,
                                 "native order must name each field of the layout once");
            const unsigned char *perm = (const unsigned char *)PyBytes_AS_STRING(native);
            uint64_t seen = 0;
            for (Py_ssize_t i = 0; i < e->count; i++) {
                if (perm[i] >= e->count || (seen >> perm[i]) & 1)
                    return bad_entry(PyExc_ValueError, tid,
                                     "native order must name each field of the layout once");
                seen |= (uint64_t)1 << perm[i];
            }
            e->perm = perm;
        } else if (native != Py_None) {
            if (!PyTuple_Check(native) || PyTuple_GET_SIZE(native) != 2)
                return bad_entry(PyExc_TypeError, tid,
                                 "native must be None or a (field index, enum table) tuple");
            if (entry_int(PyTuple_GET_ITEM(native, 0), tid, "native field index", 0,
                          e->count - 1, &e->idx) < 0)
                return -1;
            e->tab = PyTuple_GET_ITEM(native, 1);
            if (!PyTuple_Check(e->tab))
                return bad_entry(PyExc_TypeError, tid, "native enum table must be a tuple");
        } else if (e->post != Py_None) {
            if (!PyCallable_Check(e->post))
                return bad_entry(PyExc_TypeError, tid, "post must be None or callable");
            e->atomic = 0; /* a Python post function makes these fields */
        }
        return 0;
    }
    if (e->kind == K_READ) {
        e->read = PyTuple_GET_ITEM(entry, 2);
        if (native != Py_None) {
            if (entry_int(native, tid, "native text mode", 1, 2, &v) < 0)
                return -1;
            e->text = (long)v;
        } else {
            e->atomic = 0;
        }
        if (!PyCallable_Check(e->read))
            return bad_entry(PyExc_TypeError, tid, "reader must be callable");
    }
    return 0;
}

/* records(buf, pos, table, block_end, block_cap, events, Event, unknown_name)
 * -> (pos, block_end, block_cap, status, need, partial_id, skipped)
 * Raises TypeError/ValueError naming the entry when a table entry it meets has
 * the wrong shape (events decoded before it stay in ``events``). */
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
    if (!PyType_IsSubtype(etype, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Event must be a tuple type");
        return NULL;
    }
    if (block_cap != Py_None && !PyLong_Check(block_cap)) {
        PyErr_SetString(PyExc_TypeError, "block_cap must be None or an int");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(bufobj, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *buf = view.buf;
    Py_ssize_t n = view.len;
    if (pos < 0 || pos > n) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pos must be within the buffer");
        return NULL;
    }
    Py_INCREF(block_cap);
    int status = ST_MORE;
    Py_ssize_t need = 0;
    long partial = -1;
    Py_ssize_t skipped = 0; /* records of unwanted types, passed over */
    PyObject *result = NULL;
    /* Entries checked in this call, direct-mapped by type id (every GHC id is
     * below 256: no two share a slot).  A slot holds a reference to its entry,
     * so a reader that changes the table cannot free one that is in use, and
     * an entry (an immutable tuple) is checked once per call, not per record. */
    Slot cache[CACHE_SLOTS];
    for (int i = 0; i < CACHE_SLOTS; i++)
        cache[i].entry = NULL;

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
        if (PyList_GET_SIZE(table) != 0x10000) {
            PyErr_SetString(PyExc_ValueError, "table must have 65536 entries");
            goto fail;
        }
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
        Slot *slot = &cache[tid & (CACHE_SLOTS - 1)];
        if (slot->entry != entry) {
            Entry checked;
            if (read_entry(entry, tid, &checked) < 0)
                goto fail;
            Py_INCREF(entry);
            Py_XSETREF(slot->entry, entry);
            slot->e = checked;
        }
        const Entry *e = &slot->e;
        Py_ssize_t start, end;
        if (e->size < 0) {
            if (pos + 12 > n) {
                need = pos + 12;
                partial = tid;
                break;
            }
            start = pos + 12;
            end = start + (Py_ssize_t)be(buf + pos + 10, 2);
        } else {
            start = pos + 10;
            end = start + e->size;
        }
        if (end > n) {
            need = end;
            partial = tid;
            break;
        }
        PyObject *name = e->name;
        PyObject *fields = NULL;
        if (e->kind == K_SKIP) {
            pos = end;
            skipped++;
            continue;
        }
        if (e->kind == K_STRUCT || e->kind == K_VSTRUCT || e->kind == K_BLOCK) {
            if (end - start < e->fsize) {
                if (e->kind == K_BLOCK) {
                    status = ST_SHORT_BLOCK;
                    partial = tid;
                    break;
                }
                name = unknown;
                fields = PyTuple_New(0);
            } else {
                fields = fixed_fields(buf + start, e->fmt, e->count);
                if (fields != NULL && e->idx >= 0) {
                    /* (field index, enum table): swap the number for its member */
                    PyObject *old = PyTuple_GET_ITEM(fields, e->idx);
                    int overflow = 0;
                    long long code = PyLong_AsLongLongAndOverflow(old, &overflow);
                    if (code == -1 && PyErr_Occurred()) {
                        Py_DECREF(fields);
                        goto fail;
                    }
                    if (!overflow && code >= 0 && code < PyTuple_GET_SIZE(e->tab) &&
                        PyTuple_GET_ITEM(e->tab, code) != Py_None) {
                        PyObject *member = PyTuple_GET_ITEM(e->tab, code);
                        Py_INCREF(member);
                        Py_DECREF(old);
                        PyTuple_SET_ITEM(fields, e->idx, member);
                    }
                } else if (fields != NULL && e->perm != NULL) {
                    /* (a field order): the wire's fields, reordered */
                    PyObject *wire = fields;
                    fields = PyTuple_New(e->count);
                    if (fields != NULL) {
                        for (Py_ssize_t i = 0; i < e->count; i++) {
                            PyObject *v = PyTuple_GET_ITEM(wire, e->perm[i]);
                            Py_INCREF(v);
                            PyTuple_SET_ITEM(fields, i, v);
                        }
                    }
                    Py_DECREF(wire);
                } else if (fields != NULL && e->kind != K_BLOCK && e->post != Py_None) {
                    PyObject *post = PyObject_CallOneArg(e->post, fields);
                    Py_DECREF(fields);
                    fields = post;
                }
            }
            if (fields == NULL)
                goto fail;
            if (e->kind == K_BLOCK) {
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
                if (e->wanted) {
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
        } else if (e->kind == K_READ) {
            if (e->text == 1 || (e->text == 2 && end - start >= 4)) {
                /* text: the whole payload, or a u32 then the rest */
                Py_ssize_t skip = e->text == 2 ? 4 : 0;
                PyObject *txt = PyUnicode_DecodeUTF8((const char *)buf + start + skip,
                                                     end - start - skip, "replace");
                if (txt == NULL)
                    goto fail;
                if (e->text == 1) {
                    fields = PyTuple_Pack(1, txt);
                } else {
                    PyObject *id = PyLong_FromUnsignedLongLong(be(buf + start, 4));
                    fields = id == NULL ? NULL : PyTuple_Pack(2, id, txt);
                    Py_XDECREF(id);
                }
                Py_DECREF(txt);
            } else {
                fields = PyObject_CallFunction(e->read, "Onn", bufobj, start, end);
            }
            if (fields == NULL)
                goto fail;
        } else {
            fields = PyTuple_New(0);
            if (fields == NULL)
                goto fail;
        }
        PyObject *ev = make_event(etype, tid, name, t, pos < block_end ? block_cap : Py_None,
                                  fields, e->atomic);
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
    for (int i = 0; i < CACHE_SLOTS; i++)
        Py_XDECREF(cache[i].entry);
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
