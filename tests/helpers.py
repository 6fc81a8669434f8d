"""Test helpers: synthetic items and small stores (importable: tests/ is on pythonpath)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from taomm.datasets.store import FeatureStore, Item, StoreWriter, word_ends_of
from taomm.taxonomy import load_taxonomy

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def synthetic_item(index: int, feature_dim: int = 32, max_boxes: int = 6, seed: int = 0) -> Item:
    """A valid item whose content depends only on (seed, index)."""
    rng = np.random.default_rng([seed, index])
    n = int(rng.integers(0, max_boxes + 1))
    width, height = int(rng.integers(50, 400)), int(rng.integers(50, 400))
    x = np.sort(rng.uniform(0, width, (n, 2)), axis=1)
    y = np.sort(rng.uniform(0, height, (n, 2)), axis=1)
    x[:, 1] += 1e-3
    y[:, 1] += 1e-3
    boxes = np.clip(np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1), 0, [width, height, width, height])
    words = ["红色", "波点", "荷叶边", "半身裙"][: int(rng.integers(1, 5))]
    return Item(
        item_id=f"item{index:05d}",
        title="".join(words),
        word_ends=word_ends_of(words),
        width=width,
        height=height,
        boxes=boxes,
        features=rng.standard_normal((n, feature_dim)),
        labels=rng.integers(0, 33, n),
        scores=rng.uniform(0.1, 1.0, n),
    )


def open_writer(path: Path, feature_dim: int = 32, **kwargs) -> StoreWriter:
    taxonomy = load_taxonomy("taobao33")
    return StoreWriter(path, language="zh", feature_dim=feature_dim, taxonomy=taxonomy.name,
                       classes=taxonomy.classes, **kwargs)


def build_store(path: Path, count: int, feature_dim: int = 32, **kwargs) -> Path:
    with open_writer(path, feature_dim, **kwargs) as writer:
        for i in range(count):
            writer.add(synthetic_item(i, feature_dim))
        ids = [f"item{i:05d}" for i in range(count)]
        writer.set_split("train", ids[: count * 8 // 10])
        writer.set_split("val", ids[count * 8 // 10: count * 9 // 10])
        writer.set_split("test", ids[count * 9 // 10:])
    return path




def content_hash(path: Path) -> str:
    with FeatureStore(path) as store:
        return store.content_sha256()
