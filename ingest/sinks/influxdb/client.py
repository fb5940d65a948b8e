"""InfluxDB 1.x HTTP API: a thin aiohttp client (/ping, /write, /query) and
the pure parsing of what it answers.

The client is the edge of the sink: no aiohttp error leaves it.  A
connection error, a timeout or a cut answer becomes ``SinkError(retryable=
True)``, its message holding the URL without credentials and no password.

What 1.x answers to ``POST /write`` (checked on 1.6 and 1.8):

- 204: every point stored.
- 400 ``{"error": "partial write: <reason> dropped=N"}``: the points that
  parsed and fit were stored; the rest were not.  ``<reason>`` lists each line
  that failed to parse as ``unable to parse '<line>': <why>``, one per line of
  the message, and/or a reason for the ``N`` parsed points it refused (field
  type conflict, beyond the retention policy), which names no line.
- 400 ``{"error": "unable to parse '<line>': <why>"}`` (no "partial write"):
  no line of the body parsed, nothing was stored.
- 401 bad or missing credentials, 403 no write permission, 404 database not
  found, 413 body larger than ``max-body-size``, 5xx server trouble.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ingest.sinks.errors import InfluxQueryError, SinkAuthError, SinkError
from ingest.sinks.influxdb.influxql import quote_ident
from ingest.urls import mask_url

_PARSE_PREFIX = "unable to parse '"
_PARTIAL_PREFIX = "partial write: "


def check_credentials(user: str | None, password: object | None, token: object | None) -> None:
    """One way to log in: a token, or a user with an optional password
    (``ValueError`` otherwise; shared by the settings that hold credentials)."""
    if token is not None and (user is not None or password is not None):
        raise ValueError("give either a token or user/password, not both")
    if password is not None and user is None:
        raise ValueError("a password needs a user")


@dataclass(slots=True)
class WriteError:
    """A parsed /write error: ``partial`` when the rest of the batch was stored,
    the lines InfluxDB named as unparsable, and the count of parsed points it
    refused without naming them (``dropped=N``)."""

    message: str
    partial: bool
    bad_lines: list[str] = field(default_factory=list)
    dropped: int = 0


def parse_write_error(body: str, batch: list[str] | None = None) -> WriteError:
    """Parse a /write error body (JSON ``{"error": ...}`` or plain text).  When
    ``batch`` is given, only lines of the batch are reported as bad (a line
    holding ``': `` itself is matched against the batch)."""
    message = _error_message(body)
    text = message
    partial = text.startswith(_PARTIAL_PREFIX)
    if partial:
        text = text[len(_PARTIAL_PREFIX) :]
    dropped = 0
    head, sep, tail = text.rpartition(" dropped=")
    if sep and tail.isdigit():
        dropped = int(tail)
        text = head
    known = set(batch) if batch is not None else None
    bad: list[str] = []
    for part in text.split("\n"):
        if not part.startswith(_PARSE_PREFIX):
            continue
        rest = part[len(_PARSE_PREFIX) :]
        line = _named_line(rest, known)
        if line is not None:
            bad.append(line)
    return WriteError(message=message, partial=partial, bad_lines=bad, dropped=dropped)


def _named_line(rest: str, known: set[str] | None) -> str | None:
    # rest is "<line>': <why>"; the line itself may hold "': ", so try each split
    # from the right (the longest line first) and keep the one the batch has.
    end = len(rest)
    while True:
        end = rest.rfind("': ", 0, end)
        if end < 0:
            return None
        candidate = rest[:end]
        if known is None or candidate in known:
            return candidate


def _error_message(body: str) -> str:
    body = body.strip()
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    return body


@dataclass(slots=True)
class Series:
    """One series of a query result."""

    name: str
    columns: list[str]
    values: list[list]
    tags: dict[str, str] = field(default_factory=dict)
    statement_id: int = 0

    def rows(self) -> list[dict]:
        """Each value row as a dict by column name."""
        return [dict(zip(self.columns, row)) for row in self.values]


def parse_query_result(data: dict) -> list[Series]:
    """Series of every statement of a /query JSON answer; the first statement
    error raises ``InfluxQueryError``."""
    if "error" in data:
        raise InfluxQueryError(str(data["error"]))
    out: list[Series] = []
    for result in data.get("results", []):
        if "error" in result:
            raise InfluxQueryError(str(result["error"]))
        for s in result.get("series", []):
            out.append(
                Series(
                    name=s.get("name", ""),
                    columns=list(s.get("columns", [])),
                    values=[list(v) for v in s.get("values", [])],
                    tags=dict(s.get("tags") or {}),
                    statement_id=int(result.get("statement_id", 0)),
                )
            )
    return out


class InfluxClient:
    """/ping, /write and /query of one InfluxDB 1.x over an aiohttp session.

    Credentials: ``user``/``password`` sent as basic auth (``auth_in_query``:
    as ``u``/``p`` parameters instead), or ``token`` sent as
    ``Authorization: Token <token>`` (1.8+ and 2.x compatibility API).
    Secrets are plain ``str`` here; the config keeps them as ``SecretStr``.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        auth_in_query: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.user = user
        self._secrets = [s for s in (password, token) if s]
        self._headers: dict[str, str] = {}
        self._auth_params: dict[str, str] = {}
        if token:
            self._headers["Authorization"] = f"Token {token}"
        elif user is not None:
            if auth_in_query:
                self._auth_params = {"u": user, "p": password or ""}
            else:
                raw = f"{user}:{password or ''}".encode()
                self._headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    def redact(self, text: str) -> str:
        """``text`` with secrets removed and URLs without credentials (for
        messages that may hold a URL)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return mask_url(text)

    def unreachable(self, exc: BaseException, what: str = "") -> SinkError:
        """The error for a request that got no answer (``exc``: a connection
        error, a timeout, a cut answer): retryable, its text redacted."""
        detail = self.redact(str(exc)) or type(exc).__name__
        return SinkError(f"{what}InfluxDB at {mask_url(self.url)} is unreachable: {detail}", retryable=True)

    async def ping(self) -> None:
        """Raise ``SinkError(retryable=True)`` unless /ping answers 204."""
        try:
            async with self.session.get(f"{self.url}/ping", timeout=self.timeout) as resp:
                await resp.read()
                status = resp.status
        except _NO_ANSWER as exc:
            raise self.unreachable(exc) from exc
        if status != 204:
            raise SinkError(f"InfluxDB /ping answered {status}", retryable=True, status=status)

    async def write(
        self,
        body: bytes,
        database: str,
        *,
        retention_policy: str | None = None,
        gzipped: bool = False,
        timeout: float | None = None,
    ) -> tuple[int, str, dict[str, str]]:
        """POST a line-protocol body (ns precision) to /write; returns status,
        response text and headers.  No answer (connection error, timeout)
        raises ``SinkError(retryable=True)``."""
        params = {"db": database, "precision": "ns", **self._auth_params}
        if retention_policy:
            params["rp"] = retention_policy
        headers = {"Content-Type": "text/plain; charset=utf-8", **self._headers}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        t = aiohttp.ClientTimeout(total=timeout) if timeout is not None else self.timeout
        try:
            async with self.session.post(
                f"{self.url}/write", params=params, data=body, headers=headers, timeout=t
            ) as resp:
                text = await resp.text(errors="replace")
                return resp.status, text, dict(resp.headers)
        except _NO_ANSWER as exc:
            raise self.unreachable(exc) from exc

    async def query_raw(self, q: str, *, database: str | None = None,
                        params: dict[str, str] | None = None) -> dict[str, Any]:
        """POST /query (ns epochs) and return the JSON answer; HTTP errors raise
        ``SinkAuthError`` (401/403) or ``InfluxQueryError``, no answer
        ``SinkError(retryable=True)``."""
        form = {"q": q, "epoch": "ns", **(params or {}), **self._auth_params}
        if database:
            form["db"] = database
        try:
            async with self.session.post(
                f"{self.url}/query", data=form, headers=self._headers, timeout=self.timeout
            ) as resp:
                text = await resp.text(errors="replace")
                status = resp.status
        except _NO_ANSWER as exc:
            raise self.unreachable(exc) from exc
        if status in (401, 403):
            raise SinkAuthError(self.auth_message(status, text), status=status)
        if status in (408, 429) or (500 <= status < 600 and status != 501):
            raise InfluxQueryError(f"InfluxDB /query answered {status}: {_error_message(text)[:200]}",
                                   retryable=True, status=status)
        try:
            data = json.loads(text)
        except ValueError:
            raise InfluxQueryError(f"InfluxDB /query answered {status}: {text.strip()[:200]}",
                                   status=status) from None
        if not isinstance(data, dict):
            raise InfluxQueryError(f"InfluxDB /query answered {status}: {text.strip()[:200]}", status=status)
        if status >= 400 and "error" not in data:
            raise InfluxQueryError(f"InfluxDB /query answered {status}", status=status)
        return data

    async def query(self, q: str, *, database: str | None = None,
                    params: dict[str, str] | None = None) -> list[Series]:
        """Run InfluxQL and return the series of every statement."""
        return parse_query_result(await self.query_raw(q, database=database, params=params))

    async def ensure_database(self, database: str) -> None:
        """CREATE DATABASE (a no-op when it exists)."""
        await self.query(f"CREATE DATABASE {quote_ident(database)}")

    def auth_message(self, status: int, body: str) -> str:
        if self.user is not None:
            who = f"user {self.user!r}"
        elif self._headers.get("Authorization", "").startswith("Token"):
            who = "the token"
        else:
            who = "no credentials"
        what = "refused the credentials" if status == 401 else "denied the permission"
        return f"InfluxDB at {mask_url(self.url)} {what} ({status} {_error_message(body)}) for {who}"


# what a request without an answer raises (aiohttp's errors, timeouts, sockets)
_NO_ANSWER = (aiohttp.ClientError, TimeoutError, OSError)
