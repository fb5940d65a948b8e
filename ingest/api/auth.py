"""Bearer tokens: scopes, per-app restriction, a hashed JSON store.

A token reads ``lp_<id>_<secret>``.  The store keeps, per id, a random salt
and ``sha256(salt || secret)``; never the secret (its 256 random bits need
nothing slower).  A configured admin token (``api.admin_token``) is any text
a person chose, maybe weak, so it is kept as ``HMAC-SHA256(key, salt ||
text)`` with a random key in a file of its own (``tokens.key`` next to the
store, 0600): the store alone (a backup, a copied file) allows no guessing.
Its id is random (it was a prefix of the text's plain SHA-256, stored and
listed); a store of the old kind is upgraded at the token's next use.
Checking a token looks its id up, or tries the configured ones, and compares
digests in constant time.  Scopes: ``read`` (sessions,
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

from ingest.files import private_dir, read_private, write_private

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
    kind: str = "sha256"        # sha256(salt || secret), or hmac-sha256 (configured tokens)

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


def _keyed(key: bytes, salt: str, secret: str) -> str:
    return hmac.new(key, bytes.fromhex(salt) + secret.encode(), hashlib.sha256).hexdigest()


CONFIGURED = "config-"       # id prefix of tokens from the configuration
SHORT_ADMIN_TOKEN = 24       # a configured admin token shorter than this is warned about


class TokenStore:
    """Tokens by id, saved to ``path`` (0600, its directory 0700) after every change."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.key_path = self.path.with_suffix(".key")
        self.tokens: dict[str, Token] = {}
        self.created = False          # the file did not exist before load()
        self._key: bytes | None = None

    def load(self) -> None:
        try:
            data = json.loads(read_private(self.path))
        except FileNotFoundError:
            self.created = True
            return
        if self.path.stat().st_mode & 0o077:
            os.chmod(self.path, 0o600)
            log.warning("token store %s was readable by others: made 0600", self.path)
        self.tokens = {t["id"]: Token(**t) for t in data.get("tokens", [])}

    def save(self) -> None:
        text = json.dumps({"tokens": [asdict(t) for t in self.tokens.values()]}, indent=1)
        private_dir(self.path.parent, tighten=False)  # a configured path: may be shared
        write_private(self.path, text.encode())

    def key(self) -> bytes:
        """The HMAC key of configured tokens, made on first need."""
        if self._key is None:
            try:
                self._key = bytes.fromhex(read_private(self.key_path).decode().strip())
            except FileNotFoundError:
                if any(t.kind == "hmac-sha256" for t in self.tokens.values()):
                    log.error("%s is missing: the configured admin token stored in %s cannot "
                              "be checked (remove the store to make it again from the "
                              "configuration)", self.key_path, self.path)
                self._key = secrets.token_bytes(32)
                private_dir(self.key_path.parent, tighten=False)
                write_private(self.key_path, self._key.hex().encode())
        return self._key

    def create(self, name: str, scopes: list[str], apps: list[str] | None = None
               ) -> tuple[Token, str]:
        """A new token; returns it and its full text (shown once)."""
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise ValueError(f"scopes must be some of {list(SCOPES)}, got {scopes}")
        tid = self._new_id()
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        token = Token(tid, name, sorted(set(scopes), key=SCOPES.index),
                      None if apps is None else sorted(set(apps)), salt=salt,
                      digest=_digest(salt, secret))
        self.tokens[tid] = token
        self.save()
        return token, f"{PREFIX}{tid}_{secret}"

    def _new_id(self, prefix: str = "") -> str:
        tid = prefix + secrets.token_hex(6)
        while tid in self.tokens:
            tid = prefix + secrets.token_hex(6)
        return tid

    def add_admin(self, text: str) -> Token:
        """Store a configured admin token (any text), keyed-hashed."""
        if len(text) < SHORT_ADMIN_TOKEN:
            log.warning("the configured admin token has %d characters: use %d or more random "
                        "ones", len(text), SHORT_ADMIN_TOKEN)
        salt = secrets.token_hex(16)
        token = Token(self._new_id(CONFIGURED), "admin (configuration)", ["admin"], salt=salt,
                      digest=_keyed(self.key(), salt, text), kind="hmac-sha256")
        self.tokens[token.id] = token
        self.save()
        return token

    def revoke(self, tid: str) -> bool:
        if self.tokens.pop(tid, None) is None:
            return False
        self.save()
        return True

    def _matches(self, token: Token, secret: str) -> bool:
        if token.kind == "hmac-sha256":
            want = _keyed(self.key(), token.salt, secret)
        else:
            want = _digest(token.salt, secret)
        return hmac.compare_digest(want, token.digest)

    def check(self, text: str) -> Token | None:
        """The token ``text`` names, if it is valid."""
        candidates: list[tuple[Token, str]] = []
        if text.startswith(PREFIX):
            tid, sep, secret = text[len(PREFIX):].partition("_")
            if sep and tid in self.tokens:
                candidates.append((self.tokens[tid], secret))
        candidates += [(t, text) for t in self.tokens.values() if t.id.startswith(CONFIGURED)]
        for token, secret in candidates:
            if self._matches(token, secret):
                if token.id.startswith(CONFIGURED) and token.kind != "hmac-sha256":
                    token = self._upgrade(token, text)
                return token
        return None

    def _upgrade(self, old: Token, text: str) -> Token:
        """A configured token of the old kind (plain-hash id, unkeyed digest):
        kept with a random id and the keyed digest from now on."""
        del self.tokens[old.id]
        token = self.add_admin(text)
        token.name, token.scopes, token.apps, token.created = \
            old.name, old.scopes, old.apps, old.created
        self.save()
        log.info("configured admin token %s stored with a keyed digest as %s", old.id, token.id)
        return token


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


async def json_object(request: web.Request) -> dict:
    """The request's JSON body, which must be an object; 400 otherwise (also
    for JSON nested too deep to parse).  aiohttp bounds its size (1 MiB)."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        raise problem(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise problem(400, "the body must be a JSON object")
    return body


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
