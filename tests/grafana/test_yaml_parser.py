"""The small YAML reader the provisioning tests use agrees with a full YAML
parser (PyYAML) on every YAML file the project ships."""

from __future__ import annotations

import pytest
import yaml

from tests.corpus import REPO

from .yamlsubset import load

FILES = sorted(p for pattern in ("grafana/**/*.yaml", "grafana/**/*.yml", "docker-compose.yml",
                                 "deploy/**/*.yaml", "deploy/**/*.yml")
               for p in REPO.glob(pattern))


def test_there_are_yaml_files():
    assert any(p.name == "docker-compose.yml" for p in FILES)
    assert any("alerting" in str(p) for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_subset_reader_equals_pyyaml(path):
    text = path.read_text()
    assert load(text) == yaml.safe_load(text)
