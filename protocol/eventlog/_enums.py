"""Enumerations carried in event fields: thread stop status, capset type, heap
profile breakdown, Eden message tags.

Values are the numbers the RTS writes. Unknown numbers stay plain ``int``s, so a
newer RTS never makes the decoder fail.
"""

from __future__ import annotations

from enum import IntEnum


class StopStatus(IntEnum):
    """STOP_THREAD status, numbered as the RTS writes it (GHC >= 7.8.3)."""

    NoStatus = 0
    HeapOverflow = 1
    StackOverflow = 2
    ThreadYielding = 3
    ThreadBlocked = 4
    ThreadFinished = 5
    ForeignCall = 6
    BlockedOnMVar = 7
    BlockedOnBlackHole = 8
    BlockedOnRead = 9
    BlockedOnWrite = 10
    BlockedOnDelay = 11
    BlockedOnSTM = 12
    BlockedOnDoProc = 13
    BlockedOnCCall = 16
    BlockedOnCCall_Interruptible = 17
    BlockedOnMsgThrowTo = 18
    ThreadMigrating = 19
    BlockedOnMVarRead = 20


# How ghc-events 0.17 names each raw status (the reference dumps use these
# names). It labels 14-18 with an older, shifted table.
GHC_EVENTS_STATUS_NAMES = (
    "NoStatus", "HeapOverflow", "StackOverflow", "ThreadYielding", "ThreadBlocked",
    "ThreadFinished", "ForeignCall", "BlockedOnMVar", "BlockedOnBlackHoleOwnedBy",
    "BlockedOnRead", "BlockedOnWrite", "BlockedOnDelay", "BlockedOnSTM",
    "BlockedOnDoProc", "BlockedOnCCall", "BlockedOnCCall_NoUnblockExc",
    "BlockedOnMsgThrowTo", "ThreadMigrating", "BlockedOnMsgGlobalise", "NoStatus",
    "BlockedOnMVarRead",
)


def ghc_events_status_name(status: int) -> str:
    if 0 <= status < len(GHC_EVENTS_STATUS_NAMES):
        return GHC_EVENTS_STATUS_NAMES[status]
    return "NoStatus"


class CapsetType(IntEnum):
    CapsetCustom = 1
    CapsetOsProcess = 2
    CapsetClockDomain = 3


class HeapProfBreakdown(IntEnum):
    HeapProfBreakdownCostCentre = 1
    HeapProfBreakdownModule = 2
    HeapProfBreakdownClosureDescr = 3
    HeapProfBreakdownTypeDescr = 4
    HeapProfBreakdownRetainer = 5
    HeapProfBreakdownBiography = 6
    HeapProfBreakdownClosureType = 7
    HeapProfBreakdownInfoTable = 8
    HeapProfBreakdownEra = 9


class MsgTag(IntEnum):
    """Eden message tags (wire value minus 0x50)."""

    Ready = 0
    NewPE = 1
    PETIDS = 2
    Finish = 3
    FailPE = 4
    RFork = 5
    Connect = 6
    DataMes = 7
    Head = 8
    Constr = 9
    Part = 10
    Terminate = 11
    Packet = 12


EnumTable = tuple[IntEnum | None, ...]  # member by code


def _table(enum: type[IntEnum], size: int) -> EnumTable:
    table: list[IntEnum | None] = [None] * size
    for member in enum:
        table[member.value] = member
    return tuple(table)


STOP_STATUS_BY_CODE = _table(StopStatus, 21)
CAPSET_TYPE_BY_CODE = _table(CapsetType, 4)
BREAKDOWN_BY_CODE = _table(HeapProfBreakdown, 10)
MSG_TAG_BY_CODE = _table(MsgTag, 13)


def lookup(table: EnumTable, code: int) -> int:
    """The enum member for ``code``, or ``code`` itself when unknown."""
    if 0 <= code < len(table):
        member = table[code]
        if member is not None:
            return member
    return code
