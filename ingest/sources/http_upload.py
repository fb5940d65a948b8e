"""Uploads as a source: an eventlog that arrives in HTTP request bodies.

The HTTP side (requests, bounds on bodies, resumable offsets, answers) is
``ingest.api.upload``; this is the source side, the same as any other
source's: one stream per upload, opened on the service's ``Opener`` with the
app and host the client named, fed bytes as they arrive, ended once.  What
an upload's client is told at the end (complete, cut, not an eventlog, and
where) is the stream's ``SessionEnd`` (``ingest.session``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .base import StreamInfo

if TYPE_CHECKING:  # what the opener's streams report: types only, no dependency on them
    from ..session import SessionEnd
    from ..streams import StreamRecord

KIND = "http_upload"


class UploadConsumer(Protocol):
    """What an upload needs of the stream the opener gives it (``Stream``)."""

    record: StreamRecord

    def data(self, chunk: bytes) -> None: ...

    def end(self, error: str | None) -> None: ...

    @property
    def failed(self) -> bool: ...

    @property
    def error_offset(self) -> int | None: ...

    @property
    def outcome(self) -> SessionEnd | None: ...


class TaggedOpener(Protocol):
    def __call__(self, info: StreamInfo, app: str | None = None,
                 host: str | None = None) -> UploadConsumer: ...


class UploadStream:
    """One upload's stream: bytes in as they arrive, its end state out."""

    def __init__(self, stream: UploadConsumer):
        self._stream = stream

    @property
    def record(self) -> StreamRecord:
        return self._stream.record

    @property
    def key(self) -> int:
        return self._stream.record.key

    @property
    def failed(self) -> bool:
        """The bytes so far are not a valid eventlog (later bytes are ignored)."""
        return self._stream.failed

    @property
    def error_offset(self) -> int | None:
        return self._stream.error_offset

    def feed(self, chunk: bytes) -> None:
        self._stream.data(chunk)

    def finish(self) -> SessionEnd:
        """The upload is complete: end the stream.  A log cut inside a record
        keeps its events before the cut, and the cut is the stream's error."""
        self._stream.end(None)
        outcome = self._stream.outcome
        assert outcome is not None     # end() sets it
        if outcome.reason in ("header", "event") and self.record.error is None:
            self.record.error = outcome.error
        return outcome

    def abort(self, error: str | None) -> None:
        """End the stream with ``error`` (cancelled, too large, client gone)."""
        self._stream.end(error)


class UploadSource:
    """Opens a stream per upload on the service's opener, numbered in order."""

    kind = KIND

    def __init__(self, opener: TaggedOpener):
        self._opener = opener
        self.streams = 0

    def open(self, peer: str, app: str | None, host: str | None) -> UploadStream:
        self.streams += 1
        return UploadStream(self._opener(StreamInfo(KIND, peer, self.streams), app=app, host=host))
