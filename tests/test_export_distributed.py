"""`taomm export-embeddings` in batches and under torchrun: the streamed index writer equals the
one-batch writer, and two gloo ranks export what one process exports (OMP_NUM_THREADS=1, as
torchrun sets), each rank its block of items, rank 0 writing the index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import build_pretraining_store, run_taomm

from taomm.errors import TaommError
from taomm.index import (
    IDS,
    ITEMS,
    VECTORS,
    IndexParams,
    IndexWriter,
    ItemBatch,
    export_index,
    npy_chunks,
    open_index,
    write_index,
)
from taomm.model import InterBertConfig, InterBertForPretraining, InterBertForRetrieval
from taomm.text.tokenizer import TitleTokenizer
from taomm.train.distributed import check_row_shares


def batch(start: int, n: int, dim: int = 8) -> ItemBatch:
    rng = np.random.default_rng(start)
    ids = [f"item{start + i:04d}" for i in range(n)]
    vectors = {kind: rng.standard_normal((n, dim)).astype(np.float16) for kind in VECTORS}
    return ItemBatch(ids, [{"item_id": i, "title": f"标题 {i}", "image": None, "category": None} for i in ids], vectors)


def test_item_batch_travels_as_bytes() -> None:
    sent = batch(3, 5)
    got = ItemBatch.unpack(sent.pack())
    assert got.item_ids == sent.item_ids and got.items == sent.items
    for kind in VECTORS:
        np.testing.assert_array_equal(got.vectors[kind], sent.vectors[kind])


def test_streamed_writer_equals_one_batch(tmp_path: Path) -> None:
    parts = [batch(0, 7), batch(7, 1), batch(8, 12)]
    whole = ItemBatch([i for p in parts for i in p.item_ids], [it for p in parts for it in p.items],
                      {k: np.concatenate([p.vectors[k] for p in parts]) for k in VECTORS})
    one = write_index(tmp_path / "one", whole.item_ids, whole.items, whole.vectors, IndexParams(kind="flat"), {})
    with IndexWriter(tmp_path / "streamed", 20, {k: 8 for k in VECTORS}) as writer:
        for part in parts:
            writer.write(part.item_ids, part.items, part.vectors)
        streamed = writer.finish(IndexParams(kind="flat"), {})
    for name in (IDS, ITEMS, *VECTORS.values()):
        assert (one / name).read_bytes() == (streamed / name).read_bytes()
    assert json.loads((streamed / IDS).read_text("utf-8")) == whole.item_ids
    chunks = np.concatenate(list(npy_chunks(streamed / VECTORS["item"], 6)))
    np.testing.assert_array_equal(chunks, np.load(streamed / VECTORS["item"]))
    index = open_index(tmp_path / "streamed")
    _, rows = index.search("item", whole.vectors["item"][:3].astype(np.float32), 1)
    assert index.item_ids[int(rows[0, 0])] in whole.item_ids


def test_writer_refuses_a_wrong_count_and_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(TaommError, match="3 of its 4 items"), IndexWriter(tmp_path / "i", 4, {"image": 8, "item": 8}) as w:
        w.write(*vars(batch(0, 3)).values())
        w.finish(IndexParams(), {})
    with pytest.raises(TaommError, match="at row 3 of 4"), IndexWriter(tmp_path / "i", 4, {"image": 8, "item": 8}) as w:
        w.write(*vars(batch(0, 3)).values())
        w.write(*vars(batch(3, 2)).values())
    assert not list((tmp_path / "i" / "versions").iterdir())


@pytest.fixture(scope="module")
def model_and_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("export")
    store = build_pretraining_store(root / "store", count=45)
    torch.manual_seed(0)
    config = InterBertConfig.from_preset("tiny", vocab_size=len(TitleTokenizer(store / "vocab.txt")),
                                         region_feature_dim=32)
    InterBertForRetrieval(config).save_pretrained(root / "model", vocab_file=store / "vocab.txt")
    InterBertForPretraining(config).save_pretrained(root / "pretrained", vocab_file=store / "vocab.txt")
    return root, store


def test_torchrun_export_equals_one_process(model_and_store: tuple[Path, Path]) -> None:
    root, store = model_and_store
    common = ["export-embeddings", "--model", str(root / "model"), "--store", str(store), "--index-type", "flat",
              "--fp32", "--batch-size", "8", "--json"]
    one = run_taomm(*common, "--out", str(root / "one"))
    two = run_taomm(*common, "--out", str(root / "two"), nproc=2)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    summary = json.loads(two.stdout)  # rank 0 alone prints
    assert summary["items"] == 45 and len(summary["ranks"]) == 2
    assert check_row_shares(summary["ranks"], 45) == []
    assert [s["handled"] for s in summary["ranks"]] == [22, 23]
    a, b = open_index(root / "one"), open_index(root / "two")
    assert a.item_ids == b.item_ids and a.items == b.items
    for kind in VECTORS:
        np.testing.assert_allclose(a.vectors[kind].astype(np.float32), b.vectors[kind].astype(np.float32), atol=2e-3)
        _, rows_a = a.search(kind, a.vectors[kind][:10].astype(np.float32), 5)
        _, rows_b = b.search(kind, b.vectors[kind][:10].astype(np.float32), 5)
        assert (rows_a[:, 0] == rows_b[:, 0]).all()


def test_torchrun_export_fails_with_each_failed_rank(model_and_store: tuple[Path, Path]) -> None:
    root, store = model_and_store
    failed = run_taomm("export-embeddings", "--model", str(root / "pretrained"), "--store", str(store),
                   "--out", str(root / "none"), nproc=2)
    assert failed.returncode != 0
    errors = [line for line in failed.stderr.splitlines() if line.startswith("taomm: error:")]
    assert len(errors) == 1, failed.stderr
    assert "rank 0 failed" in errors[0] and "rank 1 failed" in errors[0] and "lacks the retrieval heads" in errors[0]
    assert not (root / "none" / "current").exists()


def test_torchrun_export_into_milvus_lite(model_and_store: tuple[Path, Path]) -> None:
    """Milvus Lite opens a file in one process: rank 0 alone connects and writes."""
    pytest.importorskip("pymilvus")
    root, store = model_and_store
    location = f"milvus-lite:{root / 'ranks.db'}"
    ran = run_taomm("export-embeddings", "--model", str(root / "model"), "--store", str(store), "--index", location,
                "--fp32", "--json", nproc=2)
    assert ran.returncode == 0, ran.stderr
    assert check_row_shares(json.loads(ran.stdout)["ranks"], 45) == []
    milvus = open_index(location)
    one = open_index(export_index(root / "model", store, root / "in-process", IndexParams(kind="flat"), bf16=False))
    assert list(milvus.item_ids) == one.item_ids and len(milvus) == 45
    for row in (0, 22, 23, 44):  # both ranks' blocks
        np.testing.assert_allclose(milvus.vector("item", row), one.vector("item", row), atol=2e-3)
