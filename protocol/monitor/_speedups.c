/* Over 400 lines, one file: a C extension module is one translation unit here.
 *
 * The agent's hot loops in C (liveprof agent: protocol/monitor/_sender.py
 * holds the pure Python references, selected by
 * LIVEPROF_PURE_PYTHON=1; tests/agent/test_native_encoder.py checks that both
 * give the same bytes and the same snapshot).
 *
 * block(buf, pos, stop, sizes, plan, prefix, limit)
 *     The records of one eventlog block, buf[pos:stop], as block-part bodies
 *     (prefix + CBOR byte-string head + record), and the events the state fold
 *     needs, thinned: an event whose every effect on the state a later event of
 *     the same block overwrites is left out (rules at `thin`).  Returns
 *     (pos, count, bodies, folds, last_t): folds a list of (type, time, payload)
 *     to apply in order, last_t the time of the block's last folded event (the
 *     state's last_update) or None.  Returns None when the block is not the
 *     common case (an undeclared type, a record over `limit`, a folded event too
 *     short for its fields): the caller then runs the Python loop, which has the
 *     exact rules for those.
 * pack(pending, size, bodies, room)
 *     Whole message bodies into datagrams of at most `room` bytes:
 *     (full datagrams, pending list, its size), as pack_datagrams.
 * frames(bodies)
 *     TCP frames (4-byte big-endian length + body), as one bytes.
 * (The agent's datagram sender, which does I/O, is ingest/agent/_sendmmsg.c:
 * the protocol package is sans-IO.) */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* plan kinds: what a folded event type does to the state (StateFold.PLAN) */
enum {
    P_NONE = 0,     /* not folded */
    P_KEEP = 1,     /* folded, always kept; an ordering barrier for the thinning */
    P_THREAD = 2,   /* run / runnable: a thread's execution fields */
    P_STOP = 3,     /* stop: as P_THREAD, or (status finished) removes the thread: P_KEEP */
    P_MIGRATE = 4,  /* the execution fields and the thread's capability */
    P_GC_START = 5, /* gc_since = t */
    P_GC_END = 6,   /* gc_since = None */
    P_GC_BUSY = 7,  /* gc_since = t if it is None */
    P_CAPSET = 8,   /* fields of one capset proper to the type (and its last_change) */
};
#define THREAD_FINISHED 5
/* the payload bytes `thin` reads of each kind (the plan's minimums cover them) */
static const Py_ssize_t NEED[] = {0, 0, 4, 6, 4, 0, 0, 0, 4};

static inline uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* -- the thinning's small map: key -> two item indices --------------------------- */

#define SLOTS 1024           /* a power of two */
#define MAX_KEYS (SLOTS / 2) /* beyond: a barrier (everything pending is kept) */

typedef struct {
    uint64_t key;            /* 0: empty (keys are made non-zero) */
    Py_ssize_t a, b;         /* item indices, -1 none */
} Slot;

typedef struct {
    Slot slots[SLOTS];
    int used;
} Map;

static void map_clear(Map *m)
{
    if (m->used) {
        memset(m->slots, 0, sizeof m->slots);
        m->used = 0;
    }
}

static Slot *map_get(Map *m, uint64_t key)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 54) & (SLOTS - 1);
    for (;;) {
        Slot *s = &m->slots[i];
        if (s->key == key)
            return s;
        if (s->key == 0) {
            if (m->used >= MAX_KEYS)
                return NULL;
            s->key = key;
            s->a = s->b = -1;
            m->used++;
            return s;
        }
        i = (i + 1) & (SLOTS - 1);
    }
}

typedef struct {
    uint16_t type;
    char alive;
    uint64_t t;
    Py_ssize_t start, end;   /* the payload in buf */
} Item;

typedef struct {
    Item *items;
    Py_ssize_t n, cap;
    Map map;
    Py_ssize_t gc_total, gc_busy;   /* pending gc start/end, pending busy */
    int gc_total_is_start;
} Thin;

static void barrier(Thin *th)
{
    map_clear(&th->map);
    th->gc_total = th->gc_busy = -1;
}

static void drop(Thin *th, Py_ssize_t i)
{
    if (i >= 0)
        th->items[i].alive = 0;
}

/* Add a folded event and leave out those it makes useless.  Between barriers no
 * thread or capset is created or removed (those events are barriers), so what
 * an event does depends on the state only through the fields it reads:
 *  - a thread's run/runnable/stop sets its execution, stop status, blocked
 *    owner and last change: a later one of the same thread (or a migrate)
 *    overwrites them all; a migrate also sets its capability: a later migrate
 *    of the same thread overwrites it;
 *  - gc start and gc end set gc_since whatever it was: they make every gc
 *    event before them useless; a busy event after a start, or after a kept
 *    busy event, finds gc_since set and does nothing;
 *  - a heap or GC-stats event of a capset sets fields proper to its type and
 *    the capset's last change: a later event of the same type and capset
 *    overwrites them (the last change is that of the last event, kept).
 * The state's last_update (the time of the last folded event) is returned
 * apart, as the thinning may leave that event out.  Returns -1 on no memory. */
static int thin(Thin *th, int kind, int type, uint64_t t, const unsigned char *p,
                Py_ssize_t start, Py_ssize_t end)
{
    Py_ssize_t i = th->n;
    Slot *s = NULL;
    if (kind == P_STOP)
        kind = be(p + 4, 2) == THREAD_FINISHED ? P_KEEP : P_THREAD;
    if (kind == P_GC_BUSY && (th->gc_busy >= 0 || (th->gc_total >= 0 && th->gc_total_is_start)))
        return 0;                                /* a no-op */
    if (kind == P_THREAD || kind == P_MIGRATE) {
        s = map_get(&th->map, (1ull << 48) | be(p, 4));
        if (s == NULL) {
            barrier(th);
            s = map_get(&th->map, (1ull << 48) | be(p, 4));
        }
    } else if (kind == P_CAPSET) {
        s = map_get(&th->map, (2ull << 48) | ((uint64_t)type << 32) | be(p, 4));
        if (s == NULL) {
            barrier(th);
            s = map_get(&th->map, (2ull << 48) | ((uint64_t)type << 32) | be(p, 4));
        }
    }
    switch (kind) {
    case P_KEEP:
        barrier(th);
        break;
    case P_THREAD:
        drop(th, s->a);
        s->a = i;
        break;
    case P_MIGRATE:
        drop(th, s->a);
        drop(th, s->b);
        s->a = -1;
        s->b = i;
        break;
    case P_GC_START:
    case P_GC_END:
        drop(th, th->gc_total);
        drop(th, th->gc_busy);
        th->gc_total = i;
        th->gc_total_is_start = kind == P_GC_START;
        th->gc_busy = -1;
        break;
    case P_GC_BUSY:
        th->gc_busy = i;
        break;
    case P_CAPSET:
        drop(th, s->a);
        s->a = i;
        break;
    }
    if (th->n == th->cap) {
        Py_ssize_t cap = th->cap ? th->cap * 2 : 256;
        Item *items = PyMem_Realloc(th->items, cap * sizeof(Item));
        if (items == NULL)
            return -1;
        th->items = items;
        th->cap = cap;
    }
    Item *it = &th->items[th->n++];
    it->type = (uint16_t)type;
    it->alive = 1;
    it->t = t;
    it->start = start;
    it->end = end;
    return 0;
}

/* CBOR head of a byte string of n bytes; returns its length. */
static int bhead(unsigned char *out, Py_ssize_t n)
{
    if (n < 24) {
        out[0] = (unsigned char)(0x40 | n);
        return 1;
    }
    if (n < 0x100) {
        out[0] = 0x58;
        out[1] = (unsigned char)n;
        return 2;
    }
    if (n < 0x10000) {
        out[0] = 0x59;
        out[1] = (unsigned char)(n >> 8);
        out[2] = (unsigned char)n;
        return 3;
    }
    out[0] = 0x5a;
    for (int k = 0; k < 4; k++)
        out[1 + k] = (unsigned char)(n >> (8 * (3 - k)));
    return 5;
}

static PyObject *block(PyObject *self, PyObject *args)
{
    Py_buffer buf, sizes, plan, prefix;
    Py_ssize_t pos, stop, limit;
    PyObject *result = NULL, *bodies = NULL, *folds = NULL;
    Thin *th = NULL;
    if (!PyArg_ParseTuple(args, "y*nny*y*y*n", &buf, &pos, &stop, &sizes, &plan, &prefix,
                          &limit))
        return NULL;
    if (sizes.len != 65536 * 4 || plan.len != 65536 * 2 || pos < 0 || stop > buf.len
            || prefix.len > 64) {
        PyErr_SetString(PyExc_ValueError, "block: bad table, prefix or bounds");
        goto done;
    }
    const unsigned char *b = buf.buf, *pl = plan.buf;
    const int32_t *sz = sizes.buf;
    th = PyMem_Calloc(1, sizeof(Thin));
    bodies = PyList_New(0);
    if (th == NULL || bodies == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    barrier(th);
    int have_t = 0;
    uint64_t last_t = 0;
    Py_ssize_t count = 0;
    unsigned char head[80];
    memcpy(head, prefix.buf, prefix.len);
    while (stop - pos >= 10) {
        int type = (int)be(b + pos, 2);
        int32_t size = sz[type];
        Py_ssize_t start, end;
        if (size == -2)
            goto irregular;                      /* undeclared: the Python loop says so */
        if (size < 0) {
            if (stop - pos < 12)
                break;
            start = pos + 12;
            end = start + (Py_ssize_t)be(b + pos + 10, 2);
        } else {
            start = pos + 10;
            end = start + size;
        }
        if (end > stop)
            break;
        Py_ssize_t rlen = end - pos;
        if (limit >= 0 && rlen > limit)
            goto irregular;                      /* split (spec 7.1): the Python loop */
        int kind = pl[2 * type];
        if (kind != P_NONE) {
            if (kind > P_CAPSET)
                kind = P_KEEP;
            if (end - start < pl[2 * type + 1] || end - start < NEED[kind])
                goto irregular;                  /* too short for its fields */
            uint64_t t = be(b + pos + 2, 8);
            if (thin(th, kind, type, t, b + start, start, end) < 0) {
                PyErr_NoMemory();
                goto done;
            }
            have_t = 1;
            last_t = t;
        }
        int h = (int)prefix.len + bhead(head + prefix.len, rlen);
        PyObject *body = PyBytes_FromStringAndSize(NULL, h + rlen);
        if (body == NULL)
            goto done;
        char *o = PyBytes_AS_STRING(body);
        memcpy(o, head, h);
        memcpy(o + h, b + pos, rlen);
        if (PyList_Append(bodies, body) < 0) {
            Py_DECREF(body);
            goto done;
        }
        Py_DECREF(body);
        count++;
        pos = end;
    }
    folds = PyList_New(0);
    if (folds == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < th->n; i++) {
        Item *it = &th->items[i];
        if (!it->alive)
            continue;
        PyObject *item = Py_BuildValue("(iKy#)", it->type, (unsigned long long)it->t,
                                       b + it->start, it->end - it->start);
        if (item == NULL || PyList_Append(folds, item) < 0) {
            Py_XDECREF(item);
            goto done;
        }
        Py_DECREF(item);
    }
    if (have_t)
        result = Py_BuildValue("(nnOOK)", pos, count, bodies, folds, (unsigned long long)last_t);
    else
        result = Py_BuildValue("(nnOOO)", pos, count, bodies, folds, Py_None);
    goto done;
irregular:
    result = Py_NewRef(Py_None);
done:
    if (th != NULL) {
        PyMem_Free(th->items);
        PyMem_Free(th);
    }
    Py_XDECREF(bodies);
    Py_XDECREF(folds);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&sizes);
    PyBuffer_Release(&plan);
    PyBuffer_Release(&prefix);
    return result;
}

/* b"".join(list) for a list of bytes */
static PyObject *join(PyObject *list)
{
    Py_ssize_t n = PyList_GET_SIZE(list), total = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        total += PyBytes_GET_SIZE(PyList_GET_ITEM(list, i));
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        return NULL;
    char *o = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PyList_GET_ITEM(list, i);
        memcpy(o, PyBytes_AS_STRING(x), PyBytes_GET_SIZE(x));
        o += PyBytes_GET_SIZE(x);
    }
    return out;
}

static int all_bytes(PyObject *list, const char *name)
{
    if (!PyList_Check(list)) {
        PyErr_Format(PyExc_TypeError, "%s must be a list", name);
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++)
        if (!PyBytes_Check(PyList_GET_ITEM(list, i))) {
            PyErr_Format(PyExc_TypeError, "%s must hold bytes", name);
            return 0;
        }
    return 1;
}

static PyObject *pack(PyObject *self, PyObject *args)
{
    PyObject *pending, *bodies, *full = NULL, *result = NULL;
    Py_ssize_t size, room;
    if (!PyArg_ParseTuple(args, "OnOn", &pending, &size, &bodies, &room))
        return NULL;
    if (!all_bytes(pending, "pending") || !all_bytes(bodies, "bodies"))
        return NULL;
    full = PyList_New(0);
    /* a new pending list: the caller's is not changed */
    pending = PyList_GetSlice(pending, 0, PyList_GET_SIZE(pending));
    if (full == NULL || pending == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(bodies); i++) {
        PyObject *body = PyList_GET_ITEM(bodies, i);
        Py_ssize_t n = PyBytes_GET_SIZE(body);
        if (size + n > room && PyList_GET_SIZE(pending)) {
            PyObject *gram = join(pending);
            if (gram == NULL || PyList_Append(full, gram) < 0) {
                Py_XDECREF(gram);
                goto done;
            }
            Py_DECREF(gram);
            Py_SETREF(pending, PyList_New(0));
            if (pending == NULL)
                goto done;
            size = 0;
        }
        if (PyList_Append(pending, body) < 0)
            goto done;
        size += n;
    }
    result = Py_BuildValue("(OOn)", full, pending, size);
done:
    Py_XDECREF(full);
    Py_XDECREF(pending);
    return result;
}

static PyObject *frames(PyObject *self, PyObject *bodies)
{
    if (!all_bytes(bodies, "bodies"))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(bodies), total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len = PyBytes_GET_SIZE(PyList_GET_ITEM(bodies, i));
        if (len > 0xFFFFFFFFll) {
            PyErr_SetString(PyExc_OverflowError, "frames: a body over 4 GiB");
            return NULL;
        }
        total += 4 + len;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PyList_GET_ITEM(bodies, i);
        uint32_t len = (uint32_t)PyBytes_GET_SIZE(x);
        o[0] = (unsigned char)(len >> 24);
        o[1] = (unsigned char)(len >> 16);
        o[2] = (unsigned char)(len >> 8);
        o[3] = (unsigned char)len;
        memcpy(o + 4, PyBytes_AS_STRING(x), len);
        o += 4 + len;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"block", block, METH_VARARGS, "one block's bodies and thinned fold events (see the source)"},
    {"pack", pack, METH_VARARGS, "bodies into datagrams (pack_datagrams)"},
    {"frames", frames, METH_O, "TCP frames of bodies, as one bytes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups", "The agent's hot loops in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
