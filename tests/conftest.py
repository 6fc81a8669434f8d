"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import build_store

from taomm.datasets.store import FeatureStore


@pytest.fixture
def small_store(tmp_path: Path) -> Path:
    return build_store(tmp_path / "store", 50)


@pytest.fixture
def store_reader(small_store: Path):
    with FeatureStore(small_store) as store:
        yield store
