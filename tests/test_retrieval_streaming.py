"""`evaluate` streams the split: blocks of score rows give exactly the R@K of the full score
matrices, in every mode; under torchrun (`torchrun -m taomm evaluate-retrieval`) the ranks'
blocks give one process's R@K, their shares cover the split once, and a failed rank fails all."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import open_writer, pretraining_item, run_taomm

from taomm.datasets.store import FeatureStore, word_ends_of
from taomm.model import InterBertConfig, InterBertForRetrieval
from taomm.retrieval import (
    caption_images,
    contrastive_vectors,
    encode_items,
    evaluate,
    exhaustive_scores,
    itm_scores,
    recall_at_k,
    rerank_matrix,
)
from taomm.text.tokenizer import TitleTokenizer, train_vocab
from taomm.train.distributed import check_row_shares

RECALL = ("R@1", "R@5", "R@10")


def build_caption_store(path: Path, photos: int = 11) -> Path:
    """Photos with 1-3 captions each (``ph{P}#{K}``, sharing the photo's regions) and no two
    titles alike: a tie between two scores would be float noise, decided by the batching."""
    items, seen, index = [], set(), 0
    for p in range(photos):
        photo = pretraining_item(1000 + p)
        for k in range(1 + p % 3):
            while (words := tuple(pretraining_item(index).words)) in seen:
                index += 1
            seen.add(words)
            items.append(dataclasses.replace(photo, item_id=f"ph{p}#{k}", title="".join(words),
                                             word_ends=word_ends_of(list(words))))
    train_vocab([it.title for it in items], path / "vocab.txt", vocab_size=120, min_frequency=1)
    with open_writer(path) as writer:
        for it in items:
            writer.add(it)
        writer.flush()
        writer.set_split("test", [it.item_id for it in items])
    return path


@pytest.fixture(scope="module")
def caption_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The store and a tiny random retrieval model folder (with the store's vocab)."""
    root = tmp_path_factory.mktemp("streaming")
    store = build_caption_store(root / "store")
    torch.manual_seed(0)
    config = InterBertConfig.from_preset("tiny", vocab_size=len(TitleTokenizer(store / "vocab.txt")),
                                         region_feature_dim=32)
    InterBertForRetrieval(config).save_pretrained(root / "model", vocab_file=store / "vocab.txt")
    return store, root / "model"


def full_matrices(model, fs, tok, ordinals) -> dict:
    """The score matrices of the split as `evaluate` used to build them whole."""
    cfg = model.config
    enc = encode_items(fs, ordinals, tok, max_tokens=cfg.max_text_tokens, max_regions=cfg.max_regions)
    first, relevant = caption_images([fs[int(o)].item_id for o in ordinals])
    images = encode_items(fs, ordinals[first], tok, max_tokens=cfg.max_text_tokens, max_regions=cfg.max_regions)
    text, image = contrastive_vectors(model, enc, images, bf16=False)

    def itm(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return itm_scores(model, enc, images, rows, cols, bf16=False)

    by_image = [[r for r, (c,) in enumerate(relevant) if c == j] for j in range(len(first))]
    return {"relevant": relevant, "by_image": by_image, "exhaustive": exhaustive_scores(model, enc, images, bf16=False),
            "text": text, "image": image, "itm": itm}


def test_blocks_give_the_recall_of_the_full_matrices(caption_store) -> None:
    store, model_dir = caption_store
    model = InterBertForRetrieval.from_pretrained(model_dir).eval()
    tok = TitleTokenizer(model_dir / "vocab.txt")
    with FeatureStore(store) as fs:
        ordinals = np.sort(fs.split("test"))
        full = full_matrices(model, fs, tok, ordinals)
        n, m = len(ordinals), len(full["by_image"])
        assert (n, m) == (21, 11)
        sim = full["text"] @ full["image"].T
        t2i, _ = rerank_matrix(sim, 3, full["itm"])
        i2t, _ = rerank_matrix(full["image"] @ full["text"].T, 3, lambda r, c: full["itm"](c, r))
        want = {"exhaustive": (full["exhaustive"], full["exhaustive"].T), "rerank": (t2i, i2t),
                "contrastive": (sim, full["image"] @ full["text"].T)}
        for block_rows in (4, 7):  # several blocks of rows, and of columns in the exhaustive tiles
            for mode, (scores, transposed) in want.items():
                got = evaluate(model, fs, tok, ordinals, mode, k=3, batch_size=16, bf16=False, block_rows=block_rows)
                assert {key: got[key] for key in RECALL} == recall_at_k(scores, full["relevant"]), (mode, block_rows)
                assert got["image_to_text"] == recall_at_k(transposed, full["by_image"]), (mode, block_rows)
                assert check_row_shares(got["ranks"], n) == [] and got["ranks"][0]["columns"] == [0, m]
        exhaustive = evaluate(model, fs, tok, ordinals, "exhaustive", batch_size=64, bf16=False, block_rows=5)
        assert (exhaustive["pairs_scored"], exhaustive["image_to_text_pairs_scored"]) == (n * m, n)
        rerank = evaluate(model, fs, tok, ordinals, "rerank", k=3, batch_size=64, bf16=False, block_rows=5)
        assert (rerank["pairs_scored"], rerank["image_to_text_pairs_scored"], rerank["k"]) == (3 * n, 3 * m, 3)
        randoms = [evaluate(model, fs, tok, ordinals, "random", seed=1, block_rows=b) for b in (3, 256)]
        assert randoms[0]["R@1"] == randoms[1]["R@1"] and randoms[0]["image_to_text"] == randoms[1]["image_to_text"]
        assert randoms[0]["pairs_scored"] == 0


def run_cli(*args: str, processes: int = 1) -> subprocess.CompletedProcess:
    return run_taomm("evaluate-retrieval", "--device", "cpu", *args, nproc=processes)


@pytest.mark.parametrize("mode", [["--rerank", "3"], ["--exhaustive", "--no-baselines"]], ids=["rerank", "exhaustive"])
def test_torchrun_equals_one_process(caption_store, mode: list[str]) -> None:
    store, model_dir = caption_store
    args = ["--store", str(store), "--model", str(model_dir), "--fp32", "--batch-size", "32", "--json", *mode]
    one, two = run_cli(*args), run_cli(*args, processes=2)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = json.loads(one.stdout), json.loads(two.stdout)  # rank 1 prints nothing: one JSON document
    for key in (*RECALL, "image_to_text", "baselines", "pairs_scored", "image_to_text_pairs_scored", "items"):
        assert a.get(key) == b.get(key), key
    assert len(a["ranks"]) == 1 and check_row_shares(b["ranks"], 21) == []
    assert [s["rows"] for s in b["ranks"]] == [[0, 10], [10, 21]]
    assert [s["columns"] for s in b["ranks"]] == [[0, 5], [5, 11]]


def test_torchrun_fails_every_rank_with_one_message(caption_store, tmp_path: Path) -> None:
    store, model_dir = caption_store
    for args, message in ((["--store", str(store), "--model", str(tmp_path / "missing")],
                           f"{tmp_path / 'missing'} is neither a model folder"),
                          (["--store", str(tmp_path / "nostore"), "--model", str(model_dir)],
                           f"no feature store at {tmp_path / 'nostore'}")):
        failed = run_cli(*args, "--json", processes=2)
        assert failed.returncode != 0 and failed.stdout == ""
        errors = [line for line in failed.stderr.splitlines() if line.startswith("taomm: error:")]
        assert len(errors) == 1, failed.stderr[-3000:]
        assert errors[0].startswith("taomm: error: rank 0 failed: ") and "rank 1 failed: " in errors[0]
        assert message in errors[0]
        assert not [line for line in failed.stderr.splitlines() if line.strip().startswith("File ") and "/taomm/" in line]
