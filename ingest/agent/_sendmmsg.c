/* liveprof agent's datagram sender in C: sendmmsg, a system call for up to 64
 * datagrams (ingest/agent/_send.py holds the pure Python reference, a loop of
 * send calls, selected by LIVEPROF_PURE_PYTHON=1).
 *
 * send_all(fd, grams, start)
 *     grams[start:] (a list of bytes) on a connected datagram socket: (the index
 *     of the first one the kernel refused, or len(grams); its errno, or 0). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 64

static PyObject *send_all(PyObject *self, PyObject *args)
{
    int fd;
    PyObject *grams;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "iOn", &fd, &grams, &start))
        return NULL;
    if (!PyList_Check(grams)) {
        PyErr_SetString(PyExc_TypeError, "grams must be a list");
        return NULL;
    }
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(grams); j++)
        if (!PyBytes_Check(PyList_GET_ITEM(grams, j))) {
            PyErr_SetString(PyExc_TypeError, "grams must hold bytes");
            return NULL;
        }
    Py_ssize_t n = PyList_GET_SIZE(grams), i = start < 0 ? 0 : start;
    int err = 0;
    /* the list is not changed meanwhile: the GIL is held throughout (the sends
     * do not block: a non-blocking socket) */
    while (i < n) {
#ifdef __linux__
        struct mmsghdr msgs[BATCH];
        struct iovec iov[BATCH];
        int k = 0;
        for (; k < BATCH && i + k < n; k++) {
            PyObject *g = PyList_GET_ITEM(grams, i + k);
            iov[k].iov_base = PyBytes_AS_STRING(g);
            iov[k].iov_len = (size_t)PyBytes_GET_SIZE(g);
            memset(&msgs[k], 0, sizeof msgs[k]);
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        int sent = sendmmsg(fd, msgs, (unsigned int)k, MSG_DONTWAIT);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        i += sent;
#else
        PyObject *g = PyList_GET_ITEM(grams, i);
        if (send(fd, PyBytes_AS_STRING(g), (size_t)PyBytes_GET_SIZE(g), 0) < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        i++;
#endif
    }
    return Py_BuildValue("(ni)", i, err);
}

static PyMethodDef methods[] = {
    {"send_all", send_all, METH_VARARGS, "datagrams on a connected socket (sendmmsg)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sendmmsg", "The agent's datagram sender in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__sendmmsg(void)
{
    return PyModule_Create(&module);
}
