/* Flush an eventlog buffer to the -ol file now, for Quiet.hs on GHC 9.0.

   GHC 9.0 keeps events in a 2 MiB buffer per capability (and one for events of
   no capability) and writes a buffer only when it is full or at exit; its
   flushEventLog() only fflush()es the file, and base has no flushEventLog yet
   (GHC issue #18043).  So, as ../shared/live/LiveSim.hs found, this does for
   one buffer what the RTS does when it writes one: close the open block
   (its size and end time), hand the bytes to the file writer (which fwrite()s
   and fflush()es), start a new block.  quiet_flush is called through an
   unsafe foreign call, so the calling thread keeps its capability and nothing
   else writes into that buffer meanwhile; the global buffer is taken under
   its mutex.  The buffer layout is the RTS's private one, checked before use:
   on any mismatch nothing is touched and a negative code comes back. */
#include "Rts.h"
#include <pthread.h>
#include <stdint.h>

typedef struct {               /* rts/eventlog/EventLog.c: EventsBuf (GHC 9.0) */
    uint8_t *begin, *pos, *marker;
    uint64_t size;
    uint16_t capno;
} QuietBuf;

extern QuietBuf *capEventBuf;                  /* one per capability */
extern QuietBuf eventBuf;                      /* events of no capability */
extern pthread_mutex_t eventBufMutex __attribute__((weak));
extern Capability **capabilities;
extern Time stat_getElapsedTime(void);         /* the eventlog's clock, ns */
extern void flushEventLog(void);               /* GHC 9.0: fflush of the eventlog file */

enum { BUF_SIZE = 2 * 1024 * 1024, BLOCK = 18, MARKER_LEN = 24, NO_CAP = 0xFFFF };

static void put(uint8_t *p, uint64_t v, int bytes)   /* big-endian */
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void open_block(QuietBuf *b)
{
    uint8_t *m = b->begin;
    put(m, BLOCK, 2);
    put(m + 2, (uint64_t)stat_getElapsedTime(), 8);
    put(m + 10, 0, 4);                         /* size and end: filled when closed */
    put(m + 14, 0, 8);
    put(m + 22, b->capno, 2);
    b->marker = m;
    b->pos = m + MARKER_LEN;
}

static long flush_buf(QuietBuf *b, uint16_t capno)
{
    if (b->begin == NULL || b->size != BUF_SIZE || b->capno != capno) return -3;
    if (b->pos < b->begin || b->pos > b->begin + b->size) return -4;
    if (b->marker != NULL) {
        if (b->marker < b->begin || b->marker + MARKER_LEN > b->pos
            || b->marker[0] != 0 || b->marker[1] != BLOCK) return -5;
        if (b->pos == b->marker + MARKER_LEN) return 0;   /* nothing new */
        put(b->marker + 10, (uint64_t)(b->pos - b->marker), 4);
        put(b->marker + 14, (uint64_t)stat_getElapsedTime(), 8);
    } else if (b->pos == b->begin) {
        return 0;
    }
    long n = (long)(b->pos - b->begin);
    if (!FileEventLogWriter.writeEventLog(b->begin, (size_t)n)) return -6;
    open_block(b);
    return n;
}

/* The buffer of the capability the calling thread holds, and the global one
   too if with_global.  Bytes written, or a negative code: -1 no eventlog,
   -2 capability not found, -3..-6 the buffer is not as expected. */
long quiet_flush(long with_global)
{
    if (eventLogStatus() != EVENTLOG_RUNNING || capEventBuf == NULL
        || FileEventLogWriter.writeEventLog == NULL) return -1;
    Capability *me = rts_unsafeGetMyCapability();
    long r = -2;
    for (uint32_t i = 0; i < n_capabilities; i++)
        if (capabilities[i] == me) { r = flush_buf(&capEventBuf[i], (uint16_t)i); break; }
    if (r >= 0 && with_global) {
        if (&eventBufMutex != NULL) pthread_mutex_lock(&eventBufMutex);
        long g = flush_buf(&eventBuf, NO_CAP);
        if (&eventBufMutex != NULL) pthread_mutex_unlock(&eventBufMutex);
        r = g < 0 ? g : r + g;
    }
    flushEventLog();                           /* GHC 9.0: fflush of the file */
    return r;
}
