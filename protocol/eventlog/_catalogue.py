"""Every event type the decoder knows: its name, field names and payload layouts.

Names and field names are those of ghc-events (constructor and record field
names), so that ``liveprof dump`` prints what the reference dumps print.
A type may have several layouts, told apart by the size the header declares
(see ``select_layout``).  Fixed layouts are ``struct`` formats; variable ones
are reader functions ``(buf, start, end) -> fields``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from . import _readers as r
from ._enums import CAPSET_TYPE_BY_CODE, STOP_STATUS_BY_CODE, EnumTable
from ._ids import EventType
from ._ids import EventType as E
from ._readers import Post, Reader

# what the C loop does instead of calling ``post``/``read``: for a fixed
# layout (field index, enum table) to look one field up, or bytes naming the
# wire field of each field in turn (``post`` reorders them); for a reader 1
# (whole payload as text) or 2 (u32, then the rest as text)
Native = tuple[int, EnumTable] | bytes | int | None


@dataclass(frozen=True)
class Layout:
    """One payload layout.  ``size`` is the number of payload bytes a fixed
    layout reads (``None`` for a reader that takes the whole payload)."""

    size: int | None
    struct: struct.Struct | None = None
    post: Post | None = None
    read: Reader | None = None
    names: tuple[str, ...] | None = None  # overrides the type's field names
    native: Native = None


@dataclass(frozen=True)
class EventSpec:
    id: EventType
    name: str
    fields: tuple[str, ...]
    layouts: tuple[Layout, ...]
    show: bool = False  # extension events the reference dumps print as Show text


# keyed by EventType members (typed by their base, int, so that a raw id looks one up)
CATALOGUE: dict[int, EventSpec] = {}


def fixed(fmt: str, post: Post | None = None, names: tuple[str, ...] | None = None,
          native: Native = None) -> Layout:
    st = struct.Struct(">" + fmt)
    return Layout(st.size, st, post, None, names, native)


def variable(read: Reader, native: Native = None) -> Layout:
    return Layout(None, None, None, read, None, native)


def define(id_: EventType, name: str, fields: str = "", *layouts: Layout, show: bool = False) -> None:
    CATALOGUE[id_] = EventSpec(id_, name, tuple(fields.split()), tuple(layouts) or (fixed(""),), show)


# --- the catalogue ----------------------------------------------------------------

define(E.CREATE_THREAD, "CreateThread", "thread", fixed("I"))
define(E.RUN_THREAD, "RunThread", "thread", fixed("I"))
define(E.STOP_THREAD, "StopThread", "thread status blocked_on",
       fixed("IHI", r.stop10, native=(1, STOP_STATUS_BY_CODE)),
       fixed("IH", r.stop6, names=("thread", "status"), native=(1, STOP_STATUS_BY_CODE)))
define(E.THREAD_RUNNABLE, "ThreadRunnable", "thread", fixed("I"))
define(E.MIGRATE_THREAD, "MigrateThread", "thread newCap", fixed("IH"))
define(E.RUN_SPARK, "SparkRun", "", fixed("I", r.drop_all))            # RUN_SPARK, GHC 6.12/7.0
define(E.STEAL_SPARK, "SparkSteal", "victimCap", fixed("IH", r.last_only))  # STEAL_SPARK, GHC 6.12/7.0
define(E.SHUTDOWN, "Shutdown")
define(E.THREAD_WAKEUP, "WakeupThread", "thread otherCap", fixed("IH"))
define(E.GC_START, "StartGC")
define(E.GC_END, "EndGC")
define(E.REQUEST_SEQ_GC, "RequestSeqGC")
define(E.REQUEST_PAR_GC, "RequestParGC")
define(E.CREATE_SPARK_THREAD, "CreateSparkThread", "sparkThread", fixed("I"))
define(E.LOG_MSG, "Message", "msg", variable(r.read_text, 1))
define(E.STARTUP, "Startup", "n_caps", fixed("H"))
define(E.BLOCK_MARKER, "EventBlock", "block_size end_time cap", fixed("IQH"))
define(E.USER_MSG, "UserMessage", "msg", variable(r.read_text, 1))
define(E.GC_IDLE, "GCIdle")
define(E.GC_WORK, "GCWork")
define(E.GC_DONE, "GCDone")
define(E.VERSION, "Version", "version", variable(r.read_text))
define(E.PROGRAM_INVOCATION, "ProgramInvocation", "commandline", variable(r.read_text))
define(E.CAPSET_CREATE, "CapsetCreate", "capset capsetType",
       fixed("IH", r.capset_create, native=(1, CAPSET_TYPE_BY_CODE)))
define(E.CAPSET_DELETE, "CapsetDelete", "capset", fixed("I"))
define(E.CAPSET_ASSIGN_CAP, "CapsetAssignCap", "capset cap", fixed("IH"))
define(E.CAPSET_REMOVE_CAP, "CapsetRemoveCap", "capset cap", fixed("IH"))
define(E.RTS_IDENTIFIER, "RtsIdentifier", "capset rtsident", variable(r.read_capset_text))
define(E.PROGRAM_ARGS, "ProgramArgs", "capset args", variable(r.read_capset_list))
define(E.PROGRAM_ENV, "ProgramEnv", "capset env", variable(r.read_capset_list))
define(E.OSPROCESS_PID, "OsProcessPid", "capset pid", fixed("II"))
define(E.OSPROCESS_PPID, "OsProcessParentPid", "capset ppid", fixed("II"))
define(E.SPARK_COUNTERS, "SparkCounters",
       "sparksCreated sparksDud sparksOverflowed sparksConverted sparksFizzled sparksGCd "
       "sparksRemaining", fixed("7Q", r.spark_counters, native=r.SPARK_COUNTERS_ORDER))
define(E.SPARK_CREATE, "SparkCreate")
define(E.SPARK_DUD, "SparkDud")
define(E.SPARK_OVERFLOW, "SparkOverflow")
define(E.SPARK_RUN, "SparkRun")
define(E.SPARK_STEAL, "SparkSteal", "victimCap", fixed("H"))
define(E.SPARK_FIZZLE, "SparkFizzle")
define(E.SPARK_GC, "SparkGC")
define(E.INTERN_STRING, "InternString", "str sId", variable(r.read_intern_string))
define(E.WALL_CLOCK_TIME, "WallClockTime", "capset sec nsec", fixed("IQI"))
define(E.THREAD_LABEL, "ThreadLabel", "thread threadlabel", variable(r.read_thread_text, 2))
define(E.CAP_CREATE, "CapCreate", "cap", fixed("H"))
define(E.CAP_DELETE, "CapDelete", "cap", fixed("H"))
define(E.CAP_DISABLE, "CapDisable", "cap", fixed("H"))
define(E.CAP_ENABLE, "CapEnable", "cap", fixed("H"))
define(E.HEAP_ALLOCATED, "HeapAllocated", "heapCapset allocBytes", fixed("IQ"))
define(E.HEAP_SIZE, "HeapSize", "heapCapset sizeBytes", fixed("IQ"))
define(E.HEAP_LIVE, "HeapLive", "heapCapset liveBytes", fixed("IQ"))
define(E.HEAP_INFO_GHC, "HeapInfoGHC", "heapCapset gens maxHeapSize allocAreaSize mblockSize blockSize",
       fixed("IHQQQQ"))
define(E.GC_STATS_GHC, "GCStatsGHC",
       "heapCapset gen copied slop frag parNThreads parMaxCopied parTotCopied parBalancedCopied",
       fixed("IHQQQIQQQ"), fixed("IHQQQIQQ", r.gc_stats50))
define(E.GC_GLOBAL_SYNC, "GlobalSyncGC")
define(E.TASK_CREATE, "TaskCreate", "taskId cap tid", fixed("QHQ"))
define(E.TASK_MIGRATE, "TaskMigrate", "taskId cap new_cap", fixed("QHH"))
define(E.TASK_DELETE, "TaskDelete", "taskId", fixed("Q"))
define(E.USER_MARKER, "UserMarker", "markername", variable(r.read_text, 1))
# Eden parallel RTS
define(E.EDEN_START_RECEIVE, "EdenStartReceive", show=True)
define(E.EDEN_END_RECEIVE, "EdenEndReceive", show=True)
define(E.CREATE_PROCESS, "CreateProcess", "process", fixed("I"), show=True)
define(E.KILL_PROCESS, "KillProcess", "process", fixed("I"), show=True)
define(E.ASSIGN_THREAD_TO_PROCESS, "AssignThreadToProcess", "thread process", fixed("II"), show=True)
define(E.CREATE_MACHINE, "CreateMachine", "machine realtime", fixed("HQ"), show=True)
define(E.KILL_MACHINE, "KillMachine", "machine", fixed("H"), show=True)
define(E.SEND_MESSAGE, "SendMessage",
       "mesTag senderProcess senderThread receiverMachine receiverProcess receiverInport",
       fixed("BIIHII", r.eden_tag), show=True)
define(E.RECEIVE_MESSAGE, "ReceiveMessage",
       "mesTag receiverProcess receiverInport senderMachine senderProcess senderThread "
       "messageSize", fixed("BIIHIII", r.eden_tag), show=True)
define(E.SEND_RECEIVE_LOCAL_MESSAGE, "SendReceiveLocalMessage",
       "mesTag senderProcess senderThread receiverProcess receiverInport",
       fixed("BIIII", r.eden_tag), show=True)
define(E.MEM_RETURN, "MemReturn", "heapCapset current needed returned", fixed("IIII"))
define(E.BLOCKS_SIZE, "BlocksSize", "heapCapset blocksSize", fixed("IQ"))
# Mercury
define(E.MER_START_PAR_CONJUNCTION, "MerStartParConjunction", "dyn_id static_id", fixed("QI"), show=True)
define(E.MER_STOP_PAR_CONJUNCTION, "MerEndParConjunction", "dyn_id", fixed("Q"), show=True)
define(E.MER_STOP_PAR_CONJUNCT, "MerEndParConjunct", "dyn_id", fixed("Q"), show=True)
define(E.MER_CREATE_SPARK, "MerCreateSpark", "dyn_id spark_id", fixed("QI"), show=True)
define(E.MER_FUT_CREATE, "MerFutureCreate", "future_id name_id", fixed("QI"), show=True)
define(E.MER_FUT_WAIT_NOSUSPEND, "MerFutureWaitNosuspend", "future_id", fixed("Q"), show=True)
define(E.MER_FUT_WAIT_SUSPENDED, "MerFutureWaitSuspended", "future_id", fixed("Q"), show=True)
define(E.MER_FUT_SIGNAL, "MerFutureSignal", "future_id", fixed("Q"), show=True)
define(E.MER_LOOKING_FOR_GLOBAL_CONTEXT, "MerLookingForGlobalThread", show=True)
define(E.MER_WORK_STEALING, "MerWorkStealing", show=True)
define(E.MER_RELEASE_CONTEXT, "MerReleaseThread", "thread_id", fixed("I"), show=True)
define(E.MER_ENGINE_SLEEPING, "MerCapSleeping", show=True)
define(E.MER_LOOKING_FOR_LOCAL_SPARK, "MerLookingForLocalSpark", show=True)
define(E.MER_CALLING_MAIN, "MerCallingMain", show=True)
# perf
define(E.PERF_NAME, "PerfName", "perfNum name", variable(r.read_perf_name))
define(E.PERF_COUNTER, "PerfCounter", "perfNum tid period", fixed("IQQ"))
define(E.PERF_TRACEPOINT, "PerfTracepoint", "perfNum tid", fixed("IQ"))
# heap and time profiling
define(E.HEAP_PROF_BEGIN, "HeapProfBegin",
       "heapProfId heapProfSamplingPeriod heapProfBreakdown heapProfModuleFilter "
       "heapProfClosureDescrFilter heapProfTypeDescrFilter heapProfCostCentreFilter "
       "heapProfCostCentreStackFilter heapProfRetainerFilter heapProfBiographyFilter",
       variable(r.read_heap_prof_begin))
define(E.HEAP_PROF_COST_CENTRE, "HeapProfCostCentre",
       "heapProfCostCentreId heapProfLabel heapProfModule heapProfSrcLoc heapProfFlags",
       variable(r.read_cost_centre))
define(E.HEAP_PROF_SAMPLE_BEGIN, "HeapProfSampleBegin", "heapProfSampleEra", fixed("Q"))
define(E.HEAP_PROF_SAMPLE_COST_CENTRE, "HeapProfSampleCostCentre",
       "heapProfId heapProfResidency heapProfStackDepth heapProfStack",
       variable(r.read_sample_cost_centre))
define(E.HEAP_PROF_SAMPLE_STRING, "HeapProfSampleString", "heapProfId heapProfResidency heapProfLabel",
       variable(r.read_sample_string))
define(E.HEAP_PROF_SAMPLE_END, "HeapProfSampleEnd", "heapProfSampleEra", fixed("Q"))
define(E.HEAP_BIO_PROF_SAMPLE_BEGIN, "HeapBioProfSampleBegin", "heapProfSampleEra heapProfSampleTime",
       fixed("QQ"))
define(E.PROF_SAMPLE_COST_CENTRE, "ProfSampleCostCentre", "profCapset profTicks profStackDepth profCcsStack",
       variable(r.read_prof_sample))
define(E.PROF_BEGIN, "ProfBegin", "profTickInterval", fixed("Q"))
define(E.IPE, "InfoTableProv",
       "itInfo itTableName itClosureDesc itTyDesc itLabel itModule itSrcLoc",
       variable(r.read_ipe))
define(E.USER_BINARY_MSG, "UserBinaryMessage", "payload", variable(r.read_binary))
# non-moving GC
define(E.CONC_MARK_BEGIN, "ConcMarkBegin")
define(E.CONC_MARK_END, "ConcMarkEnd", "concMarkedObjectCount", fixed("I"))
define(E.CONC_SYNC_BEGIN, "ConcSyncBegin")
define(E.CONC_SYNC_END, "ConcSyncEnd")
define(E.CONC_SWEEP_BEGIN, "ConcSweepBegin")
define(E.CONC_SWEEP_END, "ConcSweepEnd")
define(E.CONC_UPD_REM_SET_FLUSH, "ConcUpdRemSetFlush", "cap", fixed("H"))
# 13 bytes (GHC 8.10-9.8): block size as its base-2 logarithm, kept as written
# (ghc-events 0.17 does the same); 14 bytes (9.10+): block size in bytes.
define(E.NONMOVING_HEAP_CENSUS, "NonmovingHeapCensus",
       "nonmovingCensusBlkSize nonmovingCensusActiveSegs nonmovingCensusFilledSegs "
       "nonmovingCensusLiveBlocks", fixed("HIII"), fixed("BIII"))
define(E.NONMOVING_PRUNED_SEGMENTS, "NonmovingPrunedSegments",
       "nonmovingPrunedSegments nonmovingFreeSegments", fixed("II"))
# ticky-ticky
define(E.TICKY_COUNTER_DEF, "TickyCounterDef",
       "tickyCtrDefId tickyCtrDefArity tickyCtrDefKinds tickyCtrDefName tickyCtrInfoTbl "
       "tickyCtrJsonDesc", variable(r.read_ticky_def))
define(E.TICKY_COUNTER_SAMPLE, "TickyCounterSample",
       "tickyCtrSampleId tickyCtrSampleEntryCount tickyCtrSampleAllocs tickyCtrSampleAllocd",
       fixed("QQQQ"))
define(E.TICKY_COUNTER_BEGIN_SAMPLE, "TickyBeginSample")


# The same, keyed by plain ints, for per-event lookups: an int key finds an
# IntEnum key only after a rich comparison, about twice the time.
BY_ID: dict[int, EventSpec] = {int(t): spec for t, spec in CATALOGUE.items()}


def select_layout(spec: EventSpec, declared: int | None) -> Layout | None:
    """The layout to decode a type declared with ``declared`` payload bytes
    (``None``: variable size), or ``None`` when no known layout fits.

    The ghc-events rule: a fixed layout of exactly the declared size; else the
    largest fixed layout that is smaller (the extra bytes are skipped); a reader
    layout takes any payload.  A variable-size declaration of a fixed type is
    decoded with its largest layout when the payload is long enough.
    """
    readers = [lay for lay in spec.layouts if lay.size is None]
    if readers:
        return readers[0]
    # (no reader: every layout is fixed, its size an int)
    sizes = sorted(((lay.size or 0, lay) for lay in spec.layouts), key=lambda p: p[0], reverse=True)
    if declared is None:
        return sizes[0][1]
    for size, lay in sizes:
        if size == declared:
            return lay
    for size, lay in sizes:
        if size < declared:
            return lay
    return None
