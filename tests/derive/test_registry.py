"""The deriver registry: a deriver module that cannot be imported stops the
program, naming the module, instead of its measurements going missing."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_a_deriver_module_that_fails_to_import_names_itself(monkeypatch):
    monkeypatch.delitem(sys.modules, "ingest.derive.registry", raising=False)
    monkeypatch.setitem(sys.modules, "ingest.derive.threads", None)   # its import fails
    with pytest.raises(ImportError, match=r"ingest\.derive\.threads"):
        importlib.import_module("ingest.derive.registry")


def test_every_deriver_module_is_registered():
    from ingest.derive.registry import REGISTRY

    assert list(REGISTRY) == ["session", "gc", "heap", "capability", "threads", "markers",
                              "spans", "sparks", "heap_profile", "nonmoving_census",
                              "nonmoving"]
    assert all(cls.measurement == name for name, cls in REGISTRY.items())
