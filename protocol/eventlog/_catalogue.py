"""Every event type the decoder knows: its name, field names and payload layouts.

Names and field names are those of ghc-events (constructor and record field
names), so that ``liveprof dump`` prints what the reference dumps print.
A type may have several layouts, told apart by the size the header declares
(see ``select_layout``).  Fixed layouts are ``struct`` formats; variable ones
are reader functions ``(buf, start, end) -> fields``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from ._enums import (
    BREAKDOWN_BY_CODE,
    CAPSET_TYPE_BY_CODE,
    MSG_TAG_BY_CODE,
    STOP_STATUS_BY_CODE,
    lookup,
)

Reader = Callable[[bytes, int, int], tuple]


@dataclass(frozen=True)
class Layout:
    """One payload layout.  ``size`` is the number of payload bytes a fixed
    layout reads (``None`` for a reader that takes the whole payload)."""

    size: int | None
    struct: struct.Struct | None = None
    post: Callable[[tuple], tuple] | None = None
    read: Reader | None = None
    names: tuple[str, ...] | None = None  # overrides the type's field names
    # what the C loop does instead of calling ``post``/``read``: for a fixed
    # layout (field index, enum table) to look one field up; for a reader 1
    # (whole payload as text) or 2 (u32, then the rest as text)
    native: object = None


@dataclass(frozen=True)
class EventSpec:
    id: int
    name: str
    fields: tuple[str, ...]
    layouts: tuple[Layout, ...]
    show: bool = False  # extension events the reference dumps print as Show text


CATALOGUE: dict[int, EventSpec] = {}


def fixed(fmt: str, post=None, names=None, native=None) -> Layout:
    st = struct.Struct(">" + fmt)
    return Layout(st.size, st, post, None, names, native)


def variable(read: Reader, native=None) -> Layout:
    return Layout(None, None, None, read, None, native)


def define(id_: int, name: str, fields: str = "", *layouts: Layout, show: bool = False) -> None:
    CATALOGUE[id_] = EventSpec(id_, name, tuple(fields.split()), tuple(layouts) or (fixed(""),), show)


# --- payload readers -------------------------------------------------------------

_U8 = struct.Struct(">B").unpack_from
_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_U64 = struct.Struct(">Q").unpack_from


def text(raw) -> str:
    return bytes(raw).decode("utf-8", "replace")


def _cstr(buf, pos: int, end: int) -> tuple[str | None, int]:
    """A NUL-terminated string at ``pos``; (None, end) when nothing is left,
    and the rest of the payload when the terminator is missing."""
    if pos >= end:
        return None, end
    nul = buf.find(b"\0", pos, end)
    if nul < 0:
        return text(buf[pos:end]), end
    return text(buf[pos:nul]), nul + 1


def _cstrs(buf, pos: int, end: int, count: int) -> tuple[list, int]:
    out = []
    for _ in range(count):
        s, pos = _cstr(buf, pos, end)
        out.append(s)
    return out, pos


def _int(unpack, size, buf, pos, end):
    if pos + size > end:
        return None, end
    return unpack(buf, pos)[0], pos + size


def read_text(buf, start, end):
    return (text(buf[start:end]),)


def read_capset_text(buf, start, end):
    capset, pos = _int(_U32, 4, buf, start, end)
    return (capset, text(buf[pos:end]))


def read_capset_list(buf, start, end):
    capset, pos = _int(_U32, 4, buf, start, end)
    raw = bytes(buf[pos:end])
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return (capset, [text(part) for part in raw.split(b"\0")])


def read_thread_text(buf, start, end):
    thread, pos = _int(_U32, 4, buf, start, end)
    return (thread, text(buf[pos:end]))


def read_intern_string(buf, start, end):
    split = max(start, end - 4)
    sid = _U32(buf, split)[0] if end - start >= 4 else None
    return (text(buf[start:split]), sid)


def read_perf_name(buf, start, end):
    num, pos = _int(_U32, 4, buf, start, end)
    return (num, text(buf[pos:end]))


def read_heap_prof_begin(buf, start, end):
    pid, pos = _int(_U8, 1, buf, start, end)
    period, pos = _int(_U64, 8, buf, pos, end)
    breakdown, pos = _int(_U32, 4, buf, pos, end)
    if breakdown is not None:
        breakdown = lookup(BREAKDOWN_BY_CODE, breakdown)
    filters, pos = _cstrs(buf, pos, end, 7)
    return (pid, period, breakdown, *filters)


def read_cost_centre(buf, start, end):
    cc, pos = _int(_U32, 4, buf, start, end)
    strs, pos = _cstrs(buf, pos, end, 3)
    flags, pos = _int(_U8, 1, buf, pos, end)
    return (cc, *strs, flags)


def _stack(buf, pos, end, depth):
    if depth is None:
        return None
    count = min(depth, max(0, (end - pos) // 4))
    return list(struct.unpack_from(">%dI" % count, buf, pos))


def read_sample_cost_centre(buf, start, end):
    pid, pos = _int(_U8, 1, buf, start, end)
    residency, pos = _int(_U64, 8, buf, pos, end)
    depth, pos = _int(_U8, 1, buf, pos, end)
    return (pid, residency, depth, _stack(buf, pos, end, depth))


def read_sample_string(buf, start, end):
    pid, pos = _int(_U8, 1, buf, start, end)
    residency, pos = _int(_U64, 8, buf, pos, end)
    label, pos = _cstr(buf, pos, end)
    return (pid, residency, label)


def read_prof_sample(buf, start, end):
    cap, pos = _int(_U32, 4, buf, start, end)
    ticks, pos = _int(_U64, 8, buf, pos, end)
    depth, pos = _int(_U8, 1, buf, pos, end)
    return (cap, ticks, depth, _stack(buf, pos, end, depth))


def read_ipe(buf, start, end):
    info, pos = _int(_U64, 8, buf, start, end)
    strs, pos = _cstrs(buf, pos, end, 6)
    desc = strs[1]
    if desc is not None:
        digits = desc.strip()
        strs[1] = int(digits) if digits.isdigit() else desc
    return (info, *strs)


def read_binary(buf, start, end):
    return (bytes(buf[start:end]),)


def read_ticky_def(buf, start, end):
    cid, pos = _int(_U64, 8, buf, start, end)
    arity, pos = _int(_U16, 2, buf, pos, end)
    (kinds, name), pos = _cstrs(buf, pos, end, 2)
    info_table, pos = _int(_U64, 8, buf, pos, end)
    json_desc, pos = _cstr(buf, pos, end)
    return (cid, arity, kinds, name, info_table, json_desc)


# --- post-processing of fixed layouts ---------------------------------------------


def _stop10(f):
    return (f[0], lookup(STOP_STATUS_BY_CODE, f[1]), f[2])


def _stop6(f):
    return (f[0], lookup(STOP_STATUS_BY_CODE, f[1]))


def _capset_create(f):
    return (f[0], lookup(CAPSET_TYPE_BY_CODE, f[1]))


def _spark_counters(f):
    # wire order: created, dud, overflowed, converted, gc'd, fizzled, remaining
    return (f[0], f[1], f[2], f[3], f[5], f[4], f[6])


def _gc_stats50(f):
    return f + (None,)


def _eden_tag(f):
    return (lookup(MSG_TAG_BY_CODE, f[0] - 0x50),) + f[1:]


def _drop_all(f):
    return ()


def _last_only(f):
    return f[-1:]


# --- the catalogue ----------------------------------------------------------------

define(0, "CreateThread", "thread", fixed("I"))
define(1, "RunThread", "thread", fixed("I"))
define(2, "StopThread", "thread status blocked_on",
       fixed("IHI", _stop10, native=(1, STOP_STATUS_BY_CODE)),
       fixed("IH", _stop6, names=("thread", "status"), native=(1, STOP_STATUS_BY_CODE)))
define(3, "ThreadRunnable", "thread", fixed("I"))
define(4, "MigrateThread", "thread newCap", fixed("IH"))
define(5, "SparkRun", "", fixed("I", _drop_all))            # RUN_SPARK, GHC 6.12/7.0
define(6, "SparkSteal", "victimCap", fixed("IH", _last_only))  # STEAL_SPARK, GHC 6.12/7.0
define(7, "Shutdown")
define(8, "WakeupThread", "thread otherCap", fixed("IH"))
define(9, "StartGC")
define(10, "EndGC")
define(11, "RequestSeqGC")
define(12, "RequestParGC")
define(15, "CreateSparkThread", "sparkThread", fixed("I"))
define(16, "Message", "msg", variable(read_text, 1))
define(17, "Startup", "n_caps", fixed("H"))
define(18, "EventBlock", "block_size end_time cap", fixed("IQH"))
define(19, "UserMessage", "msg", variable(read_text, 1))
define(20, "GCIdle")
define(21, "GCWork")
define(22, "GCDone")
define(23, "Version", "version", variable(read_text))
define(24, "ProgramInvocation", "commandline", variable(read_text))
define(25, "CapsetCreate", "capset capsetType",
       fixed("IH", _capset_create, native=(1, CAPSET_TYPE_BY_CODE)))
define(26, "CapsetDelete", "capset", fixed("I"))
define(27, "CapsetAssignCap", "capset cap", fixed("IH"))
define(28, "CapsetRemoveCap", "capset cap", fixed("IH"))
define(29, "RtsIdentifier", "capset rtsident", variable(read_capset_text))
define(30, "ProgramArgs", "capset args", variable(read_capset_list))
define(31, "ProgramEnv", "capset env", variable(read_capset_list))
define(32, "OsProcessPid", "capset pid", fixed("II"))
define(33, "OsProcessParentPid", "capset ppid", fixed("II"))
define(34, "SparkCounters",
       "sparksCreated sparksDud sparksOverflowed sparksConverted sparksFizzled sparksGCd "
       "sparksRemaining", fixed("7Q", _spark_counters))
define(35, "SparkCreate")
define(36, "SparkDud")
define(37, "SparkOverflow")
define(38, "SparkRun")
define(39, "SparkSteal", "victimCap", fixed("H"))
define(40, "SparkFizzle")
define(41, "SparkGC")
define(42, "InternString", "str sId", variable(read_intern_string))
define(43, "WallClockTime", "capset sec nsec", fixed("IQI"))
define(44, "ThreadLabel", "thread threadlabel", variable(read_thread_text, 2))
define(45, "CapCreate", "cap", fixed("H"))
define(46, "CapDelete", "cap", fixed("H"))
define(47, "CapDisable", "cap", fixed("H"))
define(48, "CapEnable", "cap", fixed("H"))
define(49, "HeapAllocated", "heapCapset allocBytes", fixed("IQ"))
define(50, "HeapSize", "heapCapset sizeBytes", fixed("IQ"))
define(51, "HeapLive", "heapCapset liveBytes", fixed("IQ"))
define(52, "HeapInfoGHC", "heapCapset gens maxHeapSize allocAreaSize mblockSize blockSize",
       fixed("IHQQQQ"))
define(53, "GCStatsGHC",
       "heapCapset gen copied slop frag parNThreads parMaxCopied parTotCopied parBalancedCopied",
       fixed("IHQQQIQQQ"), fixed("IHQQQIQQ", _gc_stats50))
define(54, "GlobalSyncGC")
define(55, "TaskCreate", "taskId cap tid", fixed("QHQ"))
define(56, "TaskMigrate", "taskId cap new_cap", fixed("QHH"))
define(57, "TaskDelete", "taskId", fixed("Q"))
define(58, "UserMarker", "markername", variable(read_text, 1))
# Eden parallel RTS
define(60, "EdenStartReceive", show=True)
define(61, "EdenEndReceive", show=True)
define(62, "CreateProcess", "process", fixed("I"), show=True)
define(63, "KillProcess", "process", fixed("I"), show=True)
define(64, "AssignThreadToProcess", "thread process", fixed("II"), show=True)
define(65, "CreateMachine", "machine realtime", fixed("HQ"), show=True)
define(66, "KillMachine", "machine", fixed("H"), show=True)
define(67, "SendMessage",
       "mesTag senderProcess senderThread receiverMachine receiverProcess receiverInport",
       fixed("BIIHII", _eden_tag), show=True)
define(68, "ReceiveMessage",
       "mesTag receiverProcess receiverInport senderMachine senderProcess senderThread "
       "messageSize", fixed("BIIHIII", _eden_tag), show=True)
define(69, "SendReceiveLocalMessage",
       "mesTag senderProcess senderThread receiverProcess receiverInport",
       fixed("BIIII", _eden_tag), show=True)
define(90, "MemReturn", "heapCapset current needed returned", fixed("IIII"))
define(91, "BlocksSize", "heapCapset blocksSize", fixed("IQ"))
# Mercury
define(100, "MerStartParConjunction", "dyn_id static_id", fixed("QI"), show=True)
define(101, "MerEndParConjunction", "dyn_id", fixed("Q"), show=True)
define(102, "MerEndParConjunct", "dyn_id", fixed("Q"), show=True)
define(103, "MerCreateSpark", "dyn_id spark_id", fixed("QI"), show=True)
define(104, "MerFutureCreate", "future_id name_id", fixed("QI"), show=True)
define(105, "MerFutureWaitNosuspend", "future_id", fixed("Q"), show=True)
define(106, "MerFutureWaitSuspended", "future_id", fixed("Q"), show=True)
define(107, "MerFutureSignal", "future_id", fixed("Q"), show=True)
define(108, "MerLookingForGlobalThread", show=True)
define(109, "MerWorkStealing", show=True)
define(110, "MerReleaseThread", "thread_id", fixed("I"), show=True)
define(111, "MerCapSleeping", show=True)
define(112, "MerLookingForLocalSpark", show=True)
define(113, "MerCallingMain", show=True)
# perf
define(140, "PerfName", "perfNum name", variable(read_perf_name))
define(141, "PerfCounter", "perfNum tid period", fixed("IQQ"))
define(142, "PerfTracepoint", "perfNum tid", fixed("IQ"))
# heap and time profiling
define(160, "HeapProfBegin",
       "heapProfId heapProfSamplingPeriod heapProfBreakdown heapProfModuleFilter "
       "heapProfClosureDescrFilter heapProfTypeDescrFilter heapProfCostCentreFilter "
       "heapProfCostCentreStackFilter heapProfRetainerFilter heapProfBiographyFilter",
       variable(read_heap_prof_begin))
define(161, "HeapProfCostCentre",
       "heapProfCostCentreId heapProfLabel heapProfModule heapProfSrcLoc heapProfFlags",
       variable(read_cost_centre))
define(162, "HeapProfSampleBegin", "heapProfSampleEra", fixed("Q"))
define(163, "HeapProfSampleCostCentre",
       "heapProfId heapProfResidency heapProfStackDepth heapProfStack",
       variable(read_sample_cost_centre))
define(164, "HeapProfSampleString", "heapProfId heapProfResidency heapProfLabel",
       variable(read_sample_string))
define(165, "HeapProfSampleEnd", "heapProfSampleEra", fixed("Q"))
define(166, "HeapBioProfSampleBegin", "heapProfSampleEra heapProfSampleTime", fixed("QQ"))
define(167, "ProfSampleCostCentre", "profCapset profTicks profStackDepth profCcsStack",
       variable(read_prof_sample))
define(168, "ProfBegin", "profTickInterval", fixed("Q"))
define(169, "InfoTableProv",
       "itInfo itTableName itClosureDesc itTyDesc itLabel itModule itSrcLoc",
       variable(read_ipe))
define(181, "UserBinaryMessage", "payload", variable(read_binary))
# non-moving GC
define(200, "ConcMarkBegin")
define(201, "ConcMarkEnd", "concMarkedObjectCount", fixed("I"))
define(202, "ConcSyncBegin")
define(203, "ConcSyncEnd")
define(204, "ConcSweepBegin")
define(205, "ConcSweepEnd")
define(206, "ConcUpdRemSetFlush", "cap", fixed("H"))
# 13 bytes (GHC 8.10-9.8): block size as its base-2 logarithm, kept as written
# (ghc-events 0.17 does the same); 14 bytes (9.10+): block size in bytes.
define(207, "NonmovingHeapCensus",
       "nonmovingCensusBlkSize nonmovingCensusActiveSegs nonmovingCensusFilledSegs "
       "nonmovingCensusLiveBlocks", fixed("HIII"), fixed("BIII"))
define(208, "NonmovingPrunedSegments", "nonmovingPrunedSegments nonmovingFreeSegments",
       fixed("II"))
# ticky-ticky
define(210, "TickyCounterDef",
       "tickyCtrDefId tickyCtrDefArity tickyCtrDefKinds tickyCtrDefName tickyCtrInfoTbl "
       "tickyCtrJsonDesc", variable(read_ticky_def))
define(211, "TickyCounterSample",
       "tickyCtrSampleId tickyCtrSampleEntryCount tickyCtrSampleAllocs tickyCtrSampleAllocd",
       fixed("QQQQ"))
define(212, "TickyBeginSample")

BLOCK_MARKER = 18
STOP_THREAD = 2


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
    sizes = sorted((lay for lay in spec.layouts), key=lambda lay: lay.size, reverse=True)
    if declared is None:
        return sizes[0]
    for lay in sizes:
        if lay.size == declared:
            return lay
    for lay in sizes:
        if lay.size < declared:
            return lay
    return None
