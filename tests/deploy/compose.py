"""Reading docker-compose.yml, .env.example and the Dockerfile as Docker would
(the parts the stack uses), for the deploy tests."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

from yaml import safe_load as load_yaml

from tests.corpus import REPO

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}; $$ is a literal $
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def compose() -> dict:
    return load_yaml(COMPOSE.read_text())


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """KEY=VALUE lines (compose's .env format, unquoted values as this file has)."""
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{path.name}:{n}: not KEY=VALUE: {line!r}")
        out[key] = value
    return out


def defaults(text: str) -> list[tuple[str, str, str]]:
    """``(variable, operator, default)`` of each ${...} in ``text``."""
    return [(m[1], m[2] or "", m[3] or "") for m in _VAR.finditer(text) if m[1]]


def interpolate(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m[0] == "$$":
            return "$"
        name = m[1] or m[4]
        op, arg = m[2], m[3]
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return arg if value is None else value
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise KeyError(f"{name} is required: {arg}")
        return value or ""
    return _VAR.sub(sub, text)


def service_env(service: dict, env: dict[str, str]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {k: interpolate(str(v if v is not None else ""), env) for k, v in raw.items()}


def split_volume(spec: str) -> tuple[str, str, str]:
    """Short syntax ``SOURCE:TARGET[:MODE]``."""
    parts = spec.split(":")
    if len(parts) == 2:
        return parts[0], parts[1], ""
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise ValueError(f"volume {spec!r}: expected SOURCE:TARGET[:MODE]")


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def copy_sources(args: str) -> tuple[list[str], str, bool]:
    """Sources, destination, and whether it copies from another stage."""
    words = shlex.split(args)
    flags = [w for w in words if w.startswith("--")]
    rest = [w for w in words if not w.startswith("--")]
    return rest[:-1], rest[-1], any(f.startswith("--from=") for f in flags)


def dockerignored(path: str) -> bool:
    """Whether ``.dockerignore`` keeps ``path`` (relative, /-separated) out of
    the build context: its patterns with Go filepath.Match semantics on the
    path or one of its parents, ``**/`` matching any depth, ``!`` re-including."""
    ignored = False
    for line in DOCKERIGNORE.read_text().splitlines():
        pat = line.strip()
        if not pat or pat.startswith("#"):
            continue
        negate = pat.startswith("!")
        pat = pat.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        pats = [pat]
        if pat.startswith("**/"):
            pats.append(pat[3:])
        for candidate in prefixes:
            tails = [candidate] + (["/".join(candidate.split("/")[i:])
                                    for i in range(1, candidate.count("/") + 1)]
                                   if pat.startswith("**/") else [])
            if any(fnmatch.fnmatchcase(t, p) for t in tails for p in pats):
                ignored = not negate
                break
    return ignored


MAKE_ENV = REPO / "deploy" / "make-env"
# variables holding secrets: the stack refuses to start without them
SECRET = re.compile(r".*(_PASSWORD|_TOKEN)$")


def generated_env(directory: Path) -> dict[str, str]:
    """What ``deploy/make-env`` writes, run for real into ``directory/.env``."""
    import subprocess
    target = directory / ".env"
    subprocess.run([str(MAKE_ENV), str(target)], check=True, capture_output=True, timeout=60)
    return env_file(target)


def published(spec: str, env: dict[str, str]) -> tuple[str, str, str]:
    """``(host address, host port, container port[/proto])`` of a short-syntax
    port, interpolated; a spec without an address has the address ``""``
    (Docker then listens on every interface)."""
    text = interpolate(spec, env)
    parts = text.rsplit(":", 2)
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return "", "", parts[0]
