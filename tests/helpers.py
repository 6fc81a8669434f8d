"""Test helpers: synthetic items and small stores (importable: tests/ is on pythonpath)."""

from __future__ import annotations

import os
import subprocess
import sys
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




PRETRAIN_WORDS = ["红色", "蓝色", "白色", "黑色", "波点", "条纹", "格子", "碎花", "纯色", "荷叶边", "百褶",
                  "女装", "男款", "新款", "包邮", "夏季"]
PRETRAIN_CLASSES = ["半身裙", "连衣裙", "衬衫", "卫衣", "帆布鞋", "双肩包"]  # word of region class i


def pretraining_item(index: int, feature_dim: int = 32, seed: int = 0) -> Item:
    """An item of class c: its title holds c's word and 1-5 others; its 1-8 overlapping
    regions are labelled c (some unknown, -1) with features around c's own direction, so
    every pretraining task has something to learn."""
    rng = np.random.default_rng([seed, 7, index])
    c = int(rng.integers(0, len(PRETRAIN_CLASSES)))
    others = [PRETRAIN_WORDS[j] for j in rng.choice(len(PRETRAIN_WORDS), int(rng.integers(1, 6)), replace=False)]
    words = [*others, PRETRAIN_CLASSES[c]]
    n = int(rng.integers(1, 9))
    width, height = 200, 160
    x1, y1 = rng.uniform(0, 120, n), rng.uniform(0, 100, n)
    boxes = np.stack([x1, y1, x1 + rng.uniform(20, 80, n), y1 + rng.uniform(20, 60, n)], axis=1)
    labels = np.where(rng.random(n) < 0.1, -1, c)
    direction = np.random.default_rng([seed, 8, c]).standard_normal(feature_dim)
    return Item(item_id=f"p{index:05d}", title="".join(words), word_ends=word_ends_of(words), width=width,
                height=height, boxes=boxes, features=direction + 0.5 * rng.standard_normal((n, feature_dim)),
                labels=labels, scores=rng.uniform(0.1, 1.0, n))


def build_pretraining_store(path: Path, count: int = 48, feature_dim: int = 32) -> Path:
    """A store with train/test splits, mined hard negatives and a WordPiece vocab (STORE/vocab.txt)."""
    from taomm.text.mining import mine_hard_negatives
    from taomm.text.tokenizer import TitleTokenizer, train_vocab

    items = [pretraining_item(i, feature_dim) for i in range(count)]
    vocab = train_vocab([it.title for it in items], path / "vocab.txt", vocab_size=120, min_frequency=1)
    indices, _ = mine_hard_negatives([it.words for it in items], top_k=5, max_sim=0.9)
    with open_writer(path, feature_dim) as writer:
        for it in items:
            writer.add(it)
        writer.flush()
        writer.set_split("train", [it.item_id for it in items[: count * 3 // 4]])
        writer.set_split("test", [it.item_id for it in items[count * 3 // 4:]])
        writer.set_negatives((i, row[row >= 0]) for i, row in enumerate(indices))
        writer.set_tokenizer({**TitleTokenizer(vocab).info(), "vocab_file": str(vocab.resolve())})
    return path


def build_photo_store(path: Path, photos: int = 8, captions: int = 3, feature_dim: int = 32) -> Path:
    """A store of ``photos`` x ``captions`` items ``ph{P}#{K}`` (the K-th caption of photo P,
    sharing its regions), where the last caption of each photo has the title of the next
    photo's first caption: same-photo and same-title items are both present. Its mined hard
    negatives of each item are, in order, another caption of its photo, the item with its
    title (when it has one) and an allowed item; a WordPiece vocab in STORE/vocab.txt."""
    from dataclasses import replace

    from taomm.text.tokenizer import TitleTokenizer, train_vocab

    words = [pretraining_item(p * captions + k, feature_dim).words for p in range(photos) for k in range(captions)]
    for p in range(photos):  # the last caption of photo p says what the first of photo p + 1 says
        words[p * captions + captions - 1] = words[(p + 1) % photos * captions]
    items = []
    for i, w in enumerate(words):
        photo = pretraining_item(i // captions * captions, feature_dim)  # one photo, one set of regions
        items.append(replace(photo, item_id=f"ph{i // captions}#{i % captions}", title="".join(w),
                             word_ends=word_ends_of(w)))
    vocab = train_vocab([it.title for it in items], path / "vocab.txt", vocab_size=120, min_frequency=1)
    same_title = {i: j for i in range(len(items)) for j in range(len(items)) if i != j and words[i] == words[j]}
    with open_writer(path, feature_dim) as writer:
        for it in items:
            writer.add(it)
        writer.flush()
        writer.set_split("train", [it.item_id for it in items])
        negatives = []
        for i in range(len(items)):
            sibling = i // captions * captions + (i + 1) % captions
            allowed = (i + captions) % len(items)  # the same caption of the next photo
            negatives.append((i, np.asarray([sibling, *([same_title[i]] if i in same_title else []), allowed])))
        writer.set_negatives(negatives)
        writer.set_tokenizer({**TitleTokenizer(vocab).info(), "vocab_file": str(vocab.resolve())})
    return path


HOLD_LOCK = """
import sys, time
from taomm.datasets.store import StoreLock
lock = StoreLock(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def hold_lock(path: Path) -> subprocess.Popen:
    """A process that takes the store's writer lock and sleeps (kill it when done)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def content_hash(path: Path) -> str:
    with FeatureStore(path) as store:
        return store.content_sha256()


def child_env() -> dict[str, str]:
    """A child process's environment with torchrun's thread count (OMP_NUM_THREADS=1)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_taomm(*args: str, nproc: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m taomm ARGS`` in a child process, under ``torchrun --standalone`` with ``nproc``
    gloo processes when ``nproc`` > 1; one thread per process either way."""
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)] if nproc > 1 else []
    return subprocess.run([sys.executable, *launch, "-m", "taomm", *args], env=child_env(), capture_output=True,
                          text=True, timeout=timeout)
