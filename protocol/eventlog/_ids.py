"""Event type ids by name: every id the decoder knows.

Names are GHC's (``rts/include/rts/EventLogFormat.h`` without the ``EVENT_``
prefix, as in ../shared/spec/eventlog-format.md section 3); ``START_GC`` and
``END_GC`` are aliases of ``GC_START`` and ``GC_END`` in the ghc-events order.
Members are ``int``s: they hash and compare equal to the raw ids the decoder
puts in ``Event.type``.  In a per-event loop bind the ones you need to module
constants (``_RUN = int(EventType.RUN_THREAD)``): an attribute lookup on the
enum class costs more than a global.
"""

from __future__ import annotations

from enum import IntEnum


class EventType(IntEnum):
    CREATE_THREAD = 0
    RUN_THREAD = 1
    STOP_THREAD = 2
    THREAD_RUNNABLE = 3
    MIGRATE_THREAD = 4
    RUN_SPARK = 5                   # obsolete (GHC 6.12/7.0)
    STEAL_SPARK = 6                 # obsolete (GHC 6.12/7.0)
    SHUTDOWN = 7                    # obsolete (<= 7.4)
    THREAD_WAKEUP = 8
    GC_START = 9
    START_GC = 9                    # alias (ghc-events: StartGC)
    GC_END = 10
    END_GC = 10                     # alias (ghc-events: EndGC)
    REQUEST_SEQ_GC = 11
    REQUEST_PAR_GC = 12
    CREATE_SPARK_THREAD = 15
    LOG_MSG = 16
    STARTUP = 17                    # obsolete
    BLOCK_MARKER = 18
    USER_MSG = 19
    GC_IDLE = 20
    GC_WORK = 21
    GC_DONE = 22
    VERSION = 23                    # Eden
    PROGRAM_INVOCATION = 24         # Eden
    CAPSET_CREATE = 25
    CAPSET_DELETE = 26
    CAPSET_ASSIGN_CAP = 27
    CAPSET_REMOVE_CAP = 28
    RTS_IDENTIFIER = 29
    PROGRAM_ARGS = 30
    PROGRAM_ENV = 31
    OSPROCESS_PID = 32
    OSPROCESS_PPID = 33
    SPARK_COUNTERS = 34
    SPARK_CREATE = 35
    SPARK_DUD = 36
    SPARK_OVERFLOW = 37
    SPARK_RUN = 38
    SPARK_STEAL = 39
    SPARK_FIZZLE = 40
    SPARK_GC = 41
    INTERN_STRING = 42
    WALL_CLOCK_TIME = 43
    THREAD_LABEL = 44
    CAP_CREATE = 45
    CAP_DELETE = 46
    CAP_DISABLE = 47
    CAP_ENABLE = 48
    HEAP_ALLOCATED = 49
    HEAP_SIZE = 50
    HEAP_LIVE = 51
    HEAP_INFO_GHC = 52
    GC_STATS_GHC = 53
    GC_GLOBAL_SYNC = 54
    TASK_CREATE = 55
    TASK_MIGRATE = 56
    TASK_DELETE = 57
    USER_MARKER = 58
    HACK_BUG_T9003 = 59             # never emitted: declared, it marks the fixed STOP_THREAD codes
    # Eden parallel RTS
    EDEN_START_RECEIVE = 60
    EDEN_END_RECEIVE = 61
    CREATE_PROCESS = 62
    KILL_PROCESS = 63
    ASSIGN_THREAD_TO_PROCESS = 64
    CREATE_MACHINE = 65
    KILL_MACHINE = 66
    SEND_MESSAGE = 67
    RECEIVE_MESSAGE = 68
    SEND_RECEIVE_LOCAL_MESSAGE = 69
    MEM_RETURN = 90
    BLOCKS_SIZE = 91
    # Mercury
    MER_START_PAR_CONJUNCTION = 100
    MER_STOP_PAR_CONJUNCTION = 101
    MER_STOP_PAR_CONJUNCT = 102
    MER_CREATE_SPARK = 103
    MER_FUT_CREATE = 104
    MER_FUT_WAIT_NOSUSPEND = 105
    MER_FUT_WAIT_SUSPENDED = 106
    MER_FUT_SIGNAL = 107
    MER_LOOKING_FOR_GLOBAL_CONTEXT = 108
    MER_WORK_STEALING = 109
    MER_RELEASE_CONTEXT = 110
    MER_ENGINE_SLEEPING = 111
    MER_LOOKING_FOR_LOCAL_SPARK = 112
    MER_CALLING_MAIN = 113
    # Linux perf
    PERF_NAME = 140
    PERF_COUNTER = 141
    PERF_TRACEPOINT = 142
    # heap and time profiling
    HEAP_PROF_BEGIN = 160
    HEAP_PROF_COST_CENTRE = 161
    HEAP_PROF_SAMPLE_BEGIN = 162
    HEAP_PROF_SAMPLE_COST_CENTRE = 163
    HEAP_PROF_SAMPLE_STRING = 164
    HEAP_PROF_SAMPLE_END = 165
    HEAP_BIO_PROF_SAMPLE_BEGIN = 166
    PROF_SAMPLE_COST_CENTRE = 167
    PROF_BEGIN = 168
    IPE = 169
    USER_BINARY_MSG = 181
    # non-moving GC
    CONC_MARK_BEGIN = 200
    CONC_MARK_END = 201
    CONC_SYNC_BEGIN = 202
    CONC_SYNC_END = 203
    CONC_SWEEP_BEGIN = 204
    CONC_SWEEP_END = 205
    CONC_UPD_REM_SET_FLUSH = 206
    NONMOVING_HEAP_CENSUS = 207
    NONMOVING_PRUNED_SEGMENTS = 208
    # ticky-ticky
    TICKY_COUNTER_DEF = 210
    TICKY_COUNTER_SAMPLE = 211
    TICKY_COUNTER_BEGIN_SAMPLE = 212


# The record type id that ends the data section (not an event type).
END_OF_DATA = 0xFFFF
