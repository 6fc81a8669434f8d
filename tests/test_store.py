"""The LMDB feature store: round trip, idempotency, growth, contracts, workers."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import build_store, content_hash, hold_lock, open_writer, synthetic_item

from taomm.datasets.store import (
    LOCK_NAME,
    FeatureStore,
    Item,
    StoreLock,
    decode_item,
    encode_item,
    validate_item,
)
from taomm.errors import StoreError


def assert_same_item(got: Item, want: Item) -> None:
    assert got.item_id == want.item_id
    assert got.title == want.title
    assert (got.width, got.height) == (want.width, want.height)
    np.testing.assert_array_equal(got.word_ends, np.asarray(want.word_ends, dtype=np.int32))
    np.testing.assert_array_equal(got.boxes, np.asarray(want.boxes, dtype=np.float32).reshape(-1, 4))
    np.testing.assert_array_equal(got.features, np.asarray(want.features, dtype=np.float16))
    np.testing.assert_array_equal(got.labels, np.asarray(want.labels, dtype=np.int32))
    np.testing.assert_array_equal(got.scores, np.asarray(want.scores, dtype=np.float32))
    assert got.boxes.dtype == np.float32 and got.features.dtype == np.float16
    assert got.labels.dtype == np.int32 and got.scores.dtype == np.float32


def test_round_trip(store_reader: FeatureStore) -> None:
    assert len(store_reader) == 50
    for i in range(50):
        assert_same_item(store_reader[i], synthetic_item(i))
        assert store_reader.ordinal(f"item{i:05d}") == i
    assert_same_item(store_reader.get("item00007"), synthetic_item(7))
    assert [it.item_id for it in store_reader] == [f"item{i:05d}" for i in range(50)]
    item = store_reader[3]
    assert "".join(item.words) == item.title and len(item.words) == item.word_ends.size


def test_words_from_boundaries(store_reader: FeatureStore) -> None:
    words = {tuple(it.words) for it in store_reader}
    assert ("红色", "波点", "荷叶边", "半身裙") in words
    assert ("红色",) in words


def test_reads_are_zero_copy(store_reader: FeatureStore) -> None:
    item = next(it for it in store_reader if it.num_regions)
    for array in (item.boxes, item.features, item.labels, item.scores, item.word_ends):
        assert not array.flags.owndata and not array.flags.writeable


def test_meta_splits_and_missing(store_reader: FeatureStore) -> None:
    meta = store_reader.meta
    assert (meta.language, meta.feature_dim, meta.taxonomy, len(meta.classes)) == ("zh", 32, "taobao33", 33)
    assert meta.count == 50 and meta.schema_version == 1
    assert sorted(store_reader.split_names()) == ["test", "train", "val"]
    assert store_reader.split("train").tolist() == list(range(40))
    assert store_reader.split("test").tolist() == list(range(45, 50))
    with pytest.raises(StoreError, match="no split 'dev'"):
        store_reader.split("dev")
    with pytest.raises(IndexError):
        store_reader[50]
    with pytest.raises(IndexError):
        store_reader[-1]
    with pytest.raises(KeyError):
        store_reader.get("nope")
    assert "item00001" in store_reader and "nope" not in store_reader
    assert store_reader[np.int64(2)].item_id == "item00002"


def test_rerun_is_idempotent(tmp_path: Path) -> None:
    path = build_store(tmp_path / "s", 30, batch_size=7)
    before = content_hash(path)
    with open_writer(path) as writer:
        for i in range(30):
            writer.add(synthetic_item(i))
    assert (writer.added, writer.skipped) == (0, 30)
    assert content_hash(path) == before


def test_duplicates_in_one_batch_are_skipped(tmp_path: Path) -> None:
    with open_writer(tmp_path / "s") as writer:
        writer.add(synthetic_item(1))
        writer.add(synthetic_item(1))
        writer.add(synthetic_item(2))
    assert (writer.added, writer.skipped) == (2, 1)
    with FeatureStore(tmp_path / "s") as store:
        assert len(store) == 2


def test_readers_share_one_environment_and_block_writers(small_store: Path) -> None:
    first, second = FeatureStore(small_store), FeatureStore(small_store)
    assert first[1].item_id == second[1].item_id == "item00001"
    first.close()
    assert second[2].item_id == "item00002"  # still open for the other reader
    with pytest.raises(StoreError, match="open for reading"):
        open_writer(small_store)
    second.close()
    with open_writer(small_store) as writer:
        writer.add(synthetic_item(50))
    assert writer.added == 1


def test_content_hash_sees_every_change(tmp_path: Path) -> None:
    a = content_hash(build_store(tmp_path / "a", 20))
    b = content_hash(build_store(tmp_path / "b", 20, batch_size=3))
    assert a == b  # batching does not change content
    assert content_hash(build_store(tmp_path / "c", 21)) != a
    with open_writer(tmp_path / "b") as writer:
        writer.set_split("train", ["item00000"])
    assert content_hash(tmp_path / "b") != a


def test_map_grows_when_full(tmp_path: Path) -> None:
    path = build_store(tmp_path / "s", 40, feature_dim=512, map_size=64 * 1024, batch_size=16)
    with FeatureStore(path) as store:
        assert len(store) == 40
        assert_same_item(store[39], synthetic_item(39, 512))


def test_writer_refuses_incompatible_store(small_store: Path) -> None:
    with pytest.raises(StoreError, match="feature_dim 32"):
        open_writer(small_store, feature_dim=64)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"boxes": np.array([[10.0, 10.0, 5.0, 20.0]])}, "boxes must satisfy"),
        ({"boxes": np.array([[0.0, 0.0, 500.0, 20.0]])}, "boxes must satisfy"),
        ({"features": np.zeros((1, 31))}, "features shape"),
        ({"labels": np.array([33])}, "labels must be in"),
        ({"scores": np.array([1.5])}, "scores must be in"),
        ({"features": np.full((1, 32), np.nan)}, "finite"),
        ({"word_ends": np.array([2, 3])}, "last word"),
        ({"word_ends": np.array([3, 2, 4])}, "strictly increasing"),
        ({"item_id": ""}, "non-empty"),
        ({"width": 0}, "image size"),
    ],
)
def test_validation(change: dict, message: str) -> None:
    base = dict(item_id="x", title="红色裙子", word_ends=np.array([2, 4]), width=100, height=100,
                boxes=np.array([[1.0, 2.0, 50.0, 60.0]]), features=np.zeros((1, 32)),
                labels=np.array([3]), scores=np.array([0.9]))
    base.update(change)
    with pytest.raises(StoreError, match=message):
        validate_item(Item(**base), feature_dim=32, num_classes=33)


def test_encode_decode_edge_cases() -> None:
    item = validate_item(Item("id-\u00e9\U0001F600", "", np.array([], dtype=np.int32), 1, 1, np.zeros((0, 4)),
                              np.zeros((0, 8)), np.zeros(0), np.zeros(0)), feature_dim=8, num_classes=33)
    back = decode_item(memoryview(encode_item(item)))
    assert back.item_id == item.item_id and back.title == "" and back.num_regions == 0 and back.words == []
    with pytest.raises(StoreError, match="magic"):
        decode_item(b"XXXX" + encode_item(item)[4:])


def test_negatives_and_tokenizer_round_trip(small_store: Path) -> None:
    with open_writer(small_store) as writer:
        writer.set_negatives([(0, np.array([5, 6, 7])), (3, np.array([1]))])
        writer.set_tokenizer({"kind": "wordpiece", "vocab_size": 21128})
        with pytest.raises(StoreError, match="outside the store"):
            writer.set_negatives([(1, np.array([999]))])
    with FeatureStore(small_store) as store:
        assert store.negatives(0).tolist() == [5, 6, 7]
        assert store.negatives(3).tolist() == [1]
        assert store.negatives(4).size == 0
        assert store.meta.negatives == 2
        assert store.meta.tokenizer == {"kind": "wordpiece", "vocab_size": 21128}


def test_summary(store_reader: FeatureStore) -> None:
    summary = store_reader.summary()
    assert summary["items"] == 50
    assert summary["splits"] == {"test": 5, "train": 40, "val": 5}
    assert summary["meta"]["num_classes"] == 33
    assert len(summary["content_sha256"]) == 64


def test_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no feature store"):
        FeatureStore(tmp_path / "nothing")


def _loader_items(store: FeatureStore, workers: int, context: str | None) -> list[tuple[str, float, int]]:
    loader = torch.utils.data.DataLoader(
        store, batch_size=4, shuffle=False, num_workers=workers, collate_fn=list,
        multiprocessing_context=context if workers else None,
    )
    return [(it.item_id, float(np.asarray(it.features, dtype=np.float64).sum()), it.num_regions)
            for batch in loader for it in batch]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_read_the_same_items(store_reader: FeatureStore, context: str) -> None:
    if context not in mp.get_all_start_methods():
        pytest.skip(f"{context} is not available on {sys.platform}")
    store_reader[0]  # open the environment in the parent first: workers must not reuse it
    assert _loader_items(store_reader, 2, context) == _loader_items(store_reader, 0, None)


# --- one writer at a time ------------------------------------------------------------------

def count_items(path: Path) -> int:
    """How many items a reader in another process sees."""
    code = "import sys; from taomm.datasets.store import FeatureStore; print(len(FeatureStore(sys.argv[1])))"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_a_second_writer_is_refused_with_one_line(small_store: Path) -> None:
    first = open_writer(small_store)
    first.add(synthetic_item(50))
    first.flush()
    with pytest.raises(StoreError) as refused:  # a second open file description: refused in-process too
        open_writer(small_store)
    message = str(refused.value)
    assert "\n" not in message and f"store {small_store} is being written" in message
    assert f"(pid {os.getpid()})" in message
    assert (small_store / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert count_items(small_store) == 51  # readers are never blocked
    first.close()
    with open_writer(small_store) as again:
        again.add(synthetic_item(51))
    assert again.added == 1
    with pytest.raises(StoreError, match="feature_dim 32"):  # a writer that fails to open lets go of the lock
        open_writer(small_store, feature_dim=64)
    open_writer(small_store).close()


def test_a_killed_writer_leaves_no_stale_lock(small_store: Path) -> None:
    proc = hold_lock(small_store)
    try:
        with pytest.raises(StoreError, match=rf"being written by another process \(pid {proc.pid}\); wait"):
            open_writer(small_store)
        assert count_items(small_store) == 50
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with open_writer(small_store) as writer:  # the OS dropped the dead process's lock
        writer.add(synthetic_item(50))
    assert writer.added == 1


def _run_then_sleep(running) -> None:
    running.set()
    time.sleep(60)


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_a_forked_child_does_not_keep_the_lock(small_store: Path) -> None:
    """A child forked while the writer is open (a DataLoader worker) holds no lock of its own."""
    writer = open_writer(small_store)
    context = mp.get_context("fork")
    running = context.Event()
    child = context.Process(target=_run_then_sleep, args=(running,))
    child.start()
    try:
        assert running.wait(30)
        writer.close()
        open_writer(small_store).close()
    finally:
        child.kill()
        child.join()


def test_shards_of_one_store_are_written_side_by_side(tmp_path: Path) -> None:
    from taomm.datasets.sharded import shard_folder

    first, second = shard_folder(tmp_path / "store", 0, 2), shard_folder(tmp_path / "store", 1, 2)
    with open_writer(first) as a, open_writer(second) as b:
        a.add(synthetic_item(0))
        b.add(synthetic_item(1))
        with pytest.raises(StoreError, match="being written"):
            StoreLock(second)
    assert (a.added, b.added) == (1, 1)


def test_items_sha256_ignores_order_and_sharding_but_not_content(tmp_path: Path) -> None:
    from dataclasses import replace

    from taomm.datasets.sharded import ShardedStore, shard_folder

    items = [synthetic_item(i) for i in range(12)]
    changed = replace(items[5], features=np.asarray(items[5].features) + 1)
    for name, order in (("a", items), ("b", items[::-1]), ("c", [*items[:5], changed, *items[6:]])):
        with open_writer(tmp_path / name) as writer:
            for it in order:
                writer.add(it)
            writer.set_split("test", [it.item_id for it in order[:4]] if name != "b" else [i.item_id for i in items[:4]])
    for k in range(2):
        with open_writer(shard_folder(tmp_path / "shards", k, 2)) as writer:
            for it in items[k::2]:
                writer.add(it)
            writer.set_split("test", [it.item_id for it in items[:4] if it.item_id in {i.item_id for i in items[k::2]}])
    with (FeatureStore(tmp_path / "a") as a, FeatureStore(tmp_path / "b") as b, FeatureStore(tmp_path / "c") as c,
          ShardedStore(tmp_path / "shards") as shards):
        assert a.content_sha256() != b.content_sha256()  # another order
        assert a.items_sha256() == b.items_sha256() == shards.items_sha256()
        assert c.items_sha256() != a.items_sha256()  # one item's features differ
