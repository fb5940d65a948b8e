"""Who may import whom (docs/architecture.md), checked on the source.

Data flows one way (source -> session -> derive -> sinks), and each package
knows only its neighbour's interface.  These tests read every module's
imports (runtime ones: an import under ``if TYPE_CHECKING:`` only names a
type for the checker) and fail on an import that breaks the rule, naming the
module, the line and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module) of every runtime import in ``path``."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                out.extend((child.lineno, a.name) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                out.append((child.lineno, mod))
                # `from . import x` / `from ingest import api` import submodules too
                for a in child.names:
                    out.append((child.lineno, f"{mod}.{a.name}"))
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return out


def _modules(package: str, root: Path) -> list[Path]:
    return sorted((root / package.replace(".", "/")).rglob("*.py"))


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _violations(package: str, allowed, root: Path = ROOT) -> list[str]:
    bad = []
    for path in _modules(package, root):
        importer = _module_name(path, root)
        for line, mod in _imports(path, root):
            if not allowed(importer, mod):
                bad.append(f"{path.relative_to(root)}:{line}: imports {mod}")
    return sorted(set(bad))


def _any_under(mod: str, *prefixes: str) -> bool:
    return any(_under(mod, p) for p in prefixes)


# modules every layer may use: errors, backoff, file and URL helpers
LEAVES = ("ingest.errors", "ingest.backoff", "ingest.files", "ingest.urls", "ingest.chunks")


def _first_party(mod: str) -> bool:
    return _under(mod, "ingest") or _under(mod, "protocol")


def test_the_rule_reader_sees_relative_and_absolute_imports():
    # the checker itself: a relative import is resolved against its package
    mods = dict((m, n) for n, m in _imports(ROOT / "ingest" / "api" / "app.py"))
    assert "ingest.api.auth" in mods and "ingest.facade" in mods
    assert not any(_under(m, "ingest.service") for m in mods)


def test_protocol_is_sans_io_and_knows_nothing_of_ingest():
    forbidden = ("ingest", "asyncio", "socket", "aiohttp", "aiomqtt", "pydantic", "selectors")
    assert _violations("protocol", lambda _, mod: not any(_under(mod, f) for f in forbidden)) == []


def test_derivers_know_protocol_and_points_only():
    def allowed(importer: str, mod: str) -> bool:
        if not _first_party(mod):
            return True
        return _under(mod, "protocol") or _under(mod, "ingest.derive")
    assert _violations("ingest.derive", allowed) == []


def test_sinks_know_points_not_sources_or_the_service():
    def allowed(importer: str, mod: str) -> bool:
        if not _first_party(mod):
            return True
        return mod == "ingest" or _any_under(mod, "ingest.sinks", "ingest.derive.point",
                                             "ingest.alerts", "ingest.rollups", *LEAVES)
    assert _violations("ingest.sinks", allowed) == []


def test_sources_know_the_opener_not_what_is_behind_it():
    def allowed(importer: str, mod: str) -> bool:
        if not _first_party(mod):
            return True
        return mod == "ingest" or _any_under(mod, "protocol", "ingest.sources", *LEAVES)
    assert _violations("ingest.sources", allowed) == []


def test_the_agent_knows_protocol_and_the_sources_only():
    # it is a source's opener, and sends what protocol.monitor encodes: no session
    # path, derivers, sinks or service
    def allowed(importer: str, mod: str) -> bool:
        if not _first_party(mod):
            return True
        return mod == "ingest" or _any_under(mod, "protocol", "ingest.agent", "ingest.sources",
                                             *LEAVES)
    assert _violations("ingest.agent", allowed) == []


def test_the_api_sees_the_service_only_through_the_facade():
    def allowed(importer: str, mod: str) -> bool:
        if not _first_party(mod):
            return True
        return mod == "ingest" or _any_under(mod, "ingest.api", "ingest.facade", *LEAVES)
    assert _violations("ingest.api", allowed) == []


def test_only_the_service_and_the_settings_reach_the_api():
    def allowed(importer: str, mod: str) -> bool:
        if not _under(mod, "ingest.api") or _under(importer, "ingest.api"):
            return True
        return (importer in ("ingest.service", "ingest.config")
                or _under(importer, "ingest.commands"))
    bad = []
    for package in ("ingest", "protocol"):
        bad += _violations(package, allowed)
    assert sorted(set(bad)) == []


def test_a_broken_rule_is_reported_with_its_place(tmp_path):
    # the check can fail: an API module importing the service is named with its line
    probe = tmp_path / "ingest" / "api"
    probe.mkdir(parents=True)
    (probe / "probe.py").write_text("import json\n\nfrom ..service import Service\n")

    def allowed(importer: str, mod: str) -> bool:
        return not _under(mod, "ingest.service")
    assert _violations("ingest.api", allowed, root=tmp_path) == [
        "ingest/api/probe.py:3: imports ingest.service",
        "ingest/api/probe.py:3: imports ingest.service.Service"]
