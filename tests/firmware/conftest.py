"""Fixtures of the firmware tests (helpers live in ``_fw_world``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.firmware._fw_world import World, build_world


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("fwtemplate"))


@pytest.fixture
def world(_template: World, tmp_path: Path) -> World:
    """A fresh copy of the template (copying is cheaper than signing anew and keeps
    tests independent)."""
    shutil.copytree(_template.repo, tmp_path / "repo")
    shutil.copytree(_template.device, tmp_path / "device")
    return World(tmp_path / "repo", tmp_path / "device", _template.v1, _template.v2,
                 _template.t1, _template.t2)
