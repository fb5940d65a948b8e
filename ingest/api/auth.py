"""Bearer tokens: scopes, per-app restriction, a hashed JSON store.

A token reads ``lp_<id>_<secret>``.  The store keeps, per id, a random salt
and ``sha256(salt || secret)``; never the secret.  Checking a token looks
its id up and compares digests in constant time.  Scopes: ``read`` (sessions,
connections, metrics), ``write`` (uploads), ``admin`` (everything, tokens and
connection changes included).  ``apps``: ``None`` for every app, else the
only app tags the token may see and write.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiohttp import web

log = logging.getLogger("liveprof.api.auth")

SCOPES = ("read", "write", "admin")
PREFIX = "lp_"


@dataclass
class Token:
    id: str
    name: str
    scopes: list[str]
    apps: list[str] | None = None
    created: float = field(default_factory=time.time)
    salt: str = ""
    digest: str = ""

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def sees(self, app: str | None) -> bool:
        return self.apps is None or (app is not None and app in self.apps)

    @property
    def restricted(self) -> bool:
        return self.apps is not None

    def public(self) -> dict:
        return {"id": self.id, "name": self.name, "scopes": list(self.scopes),
                "apps": None if self.apps is None else list(self.apps), "created": self.created}


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


class TokenStore:
    """Tokens by id, saved to ``path`` (0600) after every change."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tokens: dict[str, Token] = {}
        self.created = False          # the file did not exist before load()

    def load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            self.created = True
            return
        self.tokens = {t["id"]: Token(**t) for t in data.get("tokens", [])}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"tokens": [asdict(t) for t in self.tokens.values()]}, f, indent=1)
        os.replace(tmp, self.path)

    def create(self, name: str, scopes: list[str], apps: list[str] | None = None,
               secret: str | None = None) -> tuple[Token, str]:
        """A new token; returns it and its full text (shown once)."""
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise ValueError(f"scopes must be some of {list(SCOPES)}, got {scopes}")
        tid = secrets.token_hex(6)
        while tid in self.tokens:
            tid = secrets.token_hex(6)
        secret = secret or secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        token = Token(tid, name, sorted(set(scopes), key=SCOPES.index),
                      None if apps is None else sorted(set(apps)), salt=salt,
                      digest=_digest(salt, secret))
        self.tokens[tid] = token
        self.save()
        return token, f"{PREFIX}{tid}_{secret}"

    def add_admin(self, text: str) -> Token:
        """Store a configured admin token (any text; hashed like the others)."""
        token, _ = self.create("admin (configuration)", ["admin"], secret=text)
        # the configured text need not have our shape: index it by a digest-only id
        del self.tokens[token.id]
        token.id = "config-" + hashlib.sha256(text.encode()).hexdigest()[:8]
        self.tokens[token.id] = token
        self.save()
        return token

    def revoke(self, tid: str) -> bool:
        if self.tokens.pop(tid, None) is None:
            return False
        self.save()
        return True

    def check(self, text: str) -> Token | None:
        """The token ``text`` names, if it is valid."""
        candidates: list[tuple[Token, str]] = []
        if text.startswith(PREFIX):
            tid, sep, secret = text[len(PREFIX):].partition("_")
            if sep and tid in self.tokens:
                candidates.append((self.tokens[tid], secret))
        cid = "config-" + hashlib.sha256(text.encode()).hexdigest()[:8]
        if cid in self.tokens:
            candidates.append((self.tokens[cid], text))
        for token, secret in candidates:
            if hmac.compare_digest(_digest(token.salt, secret), token.digest):
                return token
        return None


# -- request checks ----------------------------------------------------------------------

class ApiError(web.HTTPException):
    """An HTTP error of any status with a JSON body."""

    def __init__(self, status: int, **kwargs):
        self.status_code = status
        super().__init__(**kwargs)


def problem(status: int, message: str, **extra) -> web.HTTPException:
    """An HTTP error with a JSON body ``{"error": message, ...}``."""
    headers = {"WWW-Authenticate": 'Bearer realm="liveprof"'} if status == 401 else {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return ApiError(status, text=json.dumps({"error": message, **extra}),
                    content_type="application/json", headers=headers)


def authenticate(store: TokenStore, request: web.Request) -> Token:
    header = request.headers.get("Authorization", "")
    scheme, _, text = header.partition(" ")
    if scheme.lower() != "bearer" or not text.strip():
        raise problem(401, "a bearer token is required")
    token = store.check(text.strip())
    if token is None:
        raise problem(401, "invalid token")
    return token


def require_scope(token: Token, scope: str) -> None:
    if not token.allows(scope):
        raise problem(403, f"this token lacks the {scope!r} scope")


def require_unrestricted(token: Token) -> None:
    if token.restricted:
        raise problem(403, "this token is limited to some apps; this resource spans all of them")


def require_app(token: Token, app: str | None) -> None:
    if not token.sees(app):
        raise problem(403, f"this token may not use app {app!r}")
