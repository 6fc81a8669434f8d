"""Retrieval finetuning and evaluation: examples, a tiny end-to-end run, rerank == exhaustive
at K = N, DDP gathering of the contrastive negatives, and the CLI with no paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import build_photo_store, build_pretraining_store
from test_cli import assert_one_line_error
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.datasets.retrieval import (
    RetrievalData,
    collate_retrieval,
    read_query_log,
)
from taomm.datasets.store import FeatureStore, image_key
from taomm.errors import TaommError
from taomm.model import InterBertConfig, InterBertForRetrieval
from taomm.retrieval import (
    contrastive_vectors,
    encode_items,
    evaluate,
    itm_scores,
    recall_at_k,
    rerank_matrix,
)
from taomm.text.tokenizer import TitleTokenizer
from taomm.train import TrainConfig
from taomm.train.finetune import finetune_retrieval
from taomm.train.pretrain import pretrain

TINY = InterBertConfig.from_preset("tiny")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("finetune")
    store = build_pretraining_store(root / "store", count=48)
    pretrain(store, root / "pretrain", model_config=TINY,
             train=TrainConfig(max_steps=20, batch_size=8, workers=0, lr=2e-3, save_every=100))
    return store, root / "pretrain"


def train_config(**kw) -> TrainConfig:
    return TrainConfig(**{"max_steps": 40, "batch_size": 8, "workers": 0, "lr": 2e-3, "warmup_steps": 4,
                          "log_every": 10, "save_every": 100, **kw})


def test_examples(pretrained) -> None:
    store_path, _ = pretrained
    with FeatureStore(store_path) as store:
        tok = TitleTokenizer(store_path / "vocab.txt")
        pool = store.split("train")
        data = RetrievalData(store, tok, pool, negatives=3, hard_p=0.5)
        kinds = []
        for p in range(300):
            e = data[p]
            title = store[e["ordinal"]].title
            assert len(set(e["negatives"])) == 3 and e["ordinal"] not in e["negatives"]
            assert all(store[o].title != title for o in e["negatives"]) and set(e["negatives"]) <= set(pool.tolist())
            for o, kind in zip(e["negatives"], e["kinds"], strict=True):
                if kind == "hard":
                    assert o in store.negatives(e["ordinal"]).tolist()
            kinds += e["kinds"]
        share = kinds.count("hard") / len(kinds)
        assert 0.3 < share < 0.6  # 0.5 asked, less where an item has few hard negatives in the pool
        batch = collate_retrieval([data[p] for p in range(4)], pad_id=tok.pad_id)
        assert batch["region_features"].shape[:2] == (4, 4) and batch["input_ids"].shape[0] == 4
        assert data[7]["negatives"] == RetrievalData(store, tok, pool, negatives=3, hard_p=0.5)[7]["negatives"]


def right_answers(store, ordinal: int) -> set[int]:
    """Items that are never ``ordinal``'s negative: itself, another caption of its photo, its title."""
    item = store[ordinal]
    return {o for o in range(len(store)) if image_key(store[o].item_id) == image_key(item.item_id)
            or store[o].title == item.title}


def test_negative_images_are_never_the_same_photo_or_title(tmp_path: Path) -> None:
    with FeatureStore(build_photo_store(tmp_path / "store")) as store:
        tok = TitleTokenizer(store.path / "vocab.txt")
        data = RetrievalData(store, tok, np.arange(len(store)), negatives=3, hard_p=0.5)
        kinds = []
        for p in range(600):
            e = data[p]
            assert len(set(e["negatives"])) == 3 and not set(e["negatives"]) & right_answers(store, e["ordinal"]), e
            kinds += e["kinds"]
        assert kinds.count("hard") > 100 and kinds.count("random") > 100


def test_negatives_when_almost_every_image_is_a_right_answer(tmp_path: Path) -> None:
    """20 captions of photo 0 and 3 items of photo 1: a caption of photo 0 has exactly 3
    allowed images (a uniform draw hits one 3 times in 22), and gets exactly those."""
    with FeatureStore(build_photo_store(tmp_path / "store", photos=2, captions=20)) as store:
        tok = TitleTokenizer(store.path / "vocab.txt")
        allowed = [store.ordinal(f"ph1#{k}") for k in (1, 2, 3)]
        pool = [store.ordinal(f"ph0#{k}") for k in range(20)] + allowed
        for hard_p in (0.0, 0.5, 1.0):
            data = RetrievalData(store, tok, pool, negatives=3, hard_p=hard_p)
            for p in range(3 * len(pool)):
                e = data[p]
                if e["ordinal"] in allowed:
                    assert not set(e["negatives"]) & right_answers(store, e["ordinal"]), e
                else:
                    assert sorted(e["negatives"]) == allowed, e
        with pytest.raises(TaommError, match="only 3 of the 23 training items"):
            RetrievalData(store, tok, pool, negatives=4)


def write_log(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    "utf-8")
    return path


def test_query_log_is_read_cleaned_and_checked(pretrained, tmp_path: Path) -> None:
    store_path, _ = pretrained
    with FeatureStore(store_path) as store:
        ids = list(store.item_ids())
        log = write_log(tmp_path / "log.jsonl", [
            {"query": "红色连衣裙", "item_id": ids[0]},
            {"query": " 紅色連衣裙 ", "item_id": ids[0]},  # traditional + spaces: the same query once cleaned
            {"query": "条纹上衣", "item_id": ids[0]},
            {"query": "波点裙", "item_id": ids[5]},
            {"query": "波点裙", "item_id": "no-such-item"},
            {"query": "   ", "item_id": ids[1]},
            {"query": 3, "item_id": ids[1]},
            "not json", "", "[1, 2]",
        ])
        read = read_query_log(log, store)
    assert read.lines == 9 and read.pairs == 3
    assert read.skipped == {"unknown_item": 1, "empty_query": 1, "not_query_item": 2, "bad_json": 1}
    assert ["".join(q) for q in read.queries[0]] == ["红色连衣裙", "条纹上衣"] and "".join(read.queries[5][0]) == "波点裙"
    with pytest.raises(TaommError, match="does not exist"):
        read_query_log(tmp_path / "missing.jsonl", store)


def test_examples_draw_logged_queries(pretrained) -> None:
    store_path, _ = pretrained
    with FeatureStore(store_path) as store:
        tok = TitleTokenizer(store_path / "vocab.txt")
        pool = store.split("train")
        plain = RetrievalData(store, tok, pool)
        logged = {int(pool[0]): [["条纹", "上衣"], ["红色"]]}
        wrapped = {"".join(q): [tok.cls_id, *tok.encode_words(q).ids, tok.sep_id] for q in logged[int(pool[0])]}
        for share, low, high in ((0.0, 0, 0), (0.5, 0.3, 0.7), (1.0, 1, 1)):
            data = RetrievalData(store, tok, pool, query_log=logged, log_p=share)
            picks = []
            for p in range(len(pool) * 40):
                e = data[p]
                if e["ordinal"] != int(pool[0]):  # items without a log: as without any log
                    if p < 200:
                        assert np.array_equal(e["query_ids"], plain[p]["query_ids"])
                    continue
                ids = e["query_ids"].tolist()
                picks.append(next((text for text, want in wrapped.items() if ids == want), None))
            assert len(picks) == 40
            share_logged = sum(t is not None for t in picks) / len(picks)
            assert low <= share_logged <= high
            if share == 1.0:
                assert set(picks) == {"条纹上衣", "红色"}
        with pytest.raises(TaommError, match="query-log share"):
            RetrievalData(store, tok, pool, query_log=logged, log_p=1.5)


def test_finetune_with_a_query_log(pretrained, tmp_path: Path) -> None:
    store, pre = pretrained
    with FeatureStore(store) as fs:
        rows = [{"query": fs[int(o)].title[:4], "item_id": fs[int(o)].item_id} for o in fs.split("train")]
    log = write_log(tmp_path / "log.jsonl", [*rows, {"query": "x", "item_id": "nope"}])
    finetune_retrieval(store, pre, tmp_path / "ft", train=train_config(max_steps=4), query_log=log, log_p=0.5)
    options = json.loads((tmp_path / "ft" / "run.json").read_text())["query_log"]
    assert options["pairs"] == len(rows) and options["skipped"] == {"unknown_item": 1} and options["log_p"] == 0.5
    empty = write_log(tmp_path / "empty.jsonl", [{"query": "x", "item_id": "nope"}])
    with pytest.raises(TaommError, match="no usable"):
        finetune_retrieval(store, pre, tmp_path / "ft2", train=train_config(max_steps=4), query_log=empty)


def test_rerank_matrix_with_k_equal_n_is_exhaustive() -> None:
    rng = np.random.default_rng(0)
    full = rng.standard_normal((7, 7))
    sim = rng.standard_normal((7, 7))
    out, pairs = rerank_matrix(sim, 7, lambda r, c: full[r, c])
    assert pairs == 49 and np.array_equal(np.argsort(-out, axis=1), np.argsort(-full, axis=1))
    out3, pairs3 = rerank_matrix(sim, 3, lambda r, c: full[r, c])
    assert pairs3 == 21
    for r in range(7):  # the 3 most similar come first, ordered by the reranker
        top = np.argsort(-sim[r])[:3]
        assert set(np.argsort(-out3[r])[:3]) == set(top)
        assert list(np.argsort(-out3[r])[:3]) == list(top[np.argsort(-full[r, top])])


def test_finetune_then_evaluate(pretrained, tmp_path: Path) -> None:
    store, pre = pretrained
    result, model_dir = finetune_retrieval(store, pre, tmp_path / "ft", train=train_config())
    rows = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[-1]["contrastive"] < rows[0]["contrastive"]
    assert rows[-1]["item"] < rows[0]["item"]
    model = InterBertForRetrieval.from_pretrained(model_dir)
    assert not model.load_report.missing
    tok = TitleTokenizer(model_dir / "vocab.txt")
    with FeatureStore(store) as fs:
        test = np.sort(fs.split("test"))
        n = len(test)
        exhaustive = evaluate(model, fs, tok, test, "exhaustive", bf16=False)
        full_k = evaluate(model, fs, tok, test, "rerank", k=n, bf16=False)
        small_k = evaluate(model, fs, tok, test, "rerank", k=4, bf16=False)
        random = evaluate(model, fs, tok, test, "random")
    assert exhaustive["pairs_scored"] == n * n and small_k["pairs_scored"] == 4 * n
    for key in ("R@1", "R@5", "R@10"):  # K = N reranks everything: exactly exhaustive
        assert full_k[key] == exhaustive[key]
        assert full_k["image_to_text"][key] == exhaustive["image_to_text"][key]
    assert random["pairs_scored"] == 0
    # K = 4: the 4 most similar images by the vectors, reranked by ITM, the rest after them
    with FeatureStore(store) as fs:
        enc = encode_items(fs, test, tok, max_tokens=model.config.max_text_tokens,
                           max_regions=model.config.max_regions)
    text, image = contrastive_vectors(model, enc, enc, bf16=False)
    want, _ = rerank_matrix(text @ image.T, 4, lambda r, c: itm_scores(model, enc, enc, r, c, bf16=False))
    assert {key: small_k[key] for key in ("R@1", "R@5", "R@10")} == recall_at_k(want)


def test_finetune_ddp_matches_single_process(pretrained, tmp_path: Path) -> None:
    """The contrastive loss gathers the other rank's vectors: 2 processes = 1 process."""
    store, pre = pretrained
    config = tmp_path / "model"
    no_dropout = json.loads((pre / "model" / "config.json").read_text())
    no_dropout.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config.mkdir()
    for name in ("model.safetensors", "vocab.txt"):
        (config / name).write_bytes((pre / "model" / name).read_bytes())
    (config / "config.json").write_text(json.dumps(no_dropout))
    args = ["finetune-retrieval", "--store", str(store), "--init", str(config), "--max-steps", "3", "--batch-size",
            "8", "--log-every", "1", "--workers", "0", "--fp32", "--lr", "1e-3", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "taomm", *args, "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "taomm", *args, "--out", str(tmp_path / "two")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = ([json.loads(x) for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()] for r in ("one", "two"))
    for x, y in zip(a, b, strict=True):
        assert x["match"] == pytest.approx(y["match"], rel=1e-4)
        assert x["contrastive"] == pytest.approx(y["contrastive"], rel=1e-4)
        assert x["item"] == pytest.approx(y["item"], rel=1e-4)


def test_cli_in_a_workspace(pretrained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, pre = pretrained
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["init", "ws", "--preset", "tiny"]).exit_code == 0
    ws = tmp_path / "ws"
    (ws / "store").symlink_to(store, target_is_directory=True)
    (ws / "runs").mkdir()
    (ws / "runs" / "pretrain").symlink_to(pre, target_is_directory=True)
    monkeypatch.chdir(ws)
    zero = runner.invoke(app, ["evaluate-retrieval", "--zero-shot", "--json"])
    assert zero.exit_code == 0, zero.output
    assert json.loads(zero.stdout)["mode"] == "exhaustive"
    assert_one_line_error(runner.invoke(app, ["evaluate-retrieval", "--model", "runs/pretrain"]), 1, "--zero-shot")
    tuned = runner.invoke(app, ["finetune-retrieval", "--max-steps", "4", "--batch-size", "4", "--workers", "0",
                                "--json"])
    assert tuned.exit_code == 0, tuned.output
    assert json.loads((ws / "runs" / "retrieval" / "run.json").read_text())["query_log"] is None
    assert_one_line_error(runner.invoke(app, ["finetune-retrieval", "--query-log", "missing.jsonl"]), 1,
                          "does not exist")
    with FeatureStore(store) as fs:
        write_log(ws / "log.jsonl", [{"query": fs[0].title[:3], "item_id": fs[0].item_id}])
    toml = (ws / "taomm.toml").read_text().replace("[sources]", '[sources]\nquery_log = "log.jsonl"')
    (ws / "taomm.toml").write_text(toml)
    logged = runner.invoke(app, ["finetune-retrieval", "--max-steps", "2", "--batch-size", "4", "--workers", "0",
                                 "--out", "runs/logged", "--json"])
    assert logged.exit_code == 0, logged.output
    assert json.loads((ws / "runs" / "logged" / "run.json").read_text())["query_log"]["pairs"] == 1
    assert (ws / "runs" / "retrieval" / "model" / "model.safetensors").is_file()
    result = runner.invoke(app, ["evaluate-retrieval", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "rerank" and {"R@1", "R@5", "R@10", "pairs_scored", "seconds"} <= set(data)
    assert set(data["baselines"]) == {"random", "contrastive"}
    table = runner.invoke(app, ["evaluate-retrieval", "--exhaustive"])
    assert table.exit_code == 0 and "exhaustive" in table.stdout and "R@10" in table.stdout
    assert_one_line_error(runner.invoke(app, ["evaluate-retrieval", "--exhaustive", "--rerank", "4"]), 1,
                          "choose one")


def test_cli_paper_recipe_without_the_extra_losses(pretrained, tmp_path: Path) -> None:
    """--contrastive 0 --item-loss 0: the 4-way ITM choice alone, the vector heads untouched."""
    store, pre = pretrained
    runner = CliRunner()
    help_text = runner.invoke(app, ["finetune-retrieval", "--help"], env={"COLUMNS": "200"}).stdout
    assert "--contrastive" in help_text and "--item-loss" in help_text
    args = ["finetune-retrieval", "--store", str(store), "--init", str(pre), "--max-steps", "3", "--batch-size", "4",
            "--negatives", "3", "--log-every", "1", "--workers", "0", "--fp32", "--json"]
    paper = runner.invoke(app, [*args, "--out", str(tmp_path / "paper"), "--contrastive", "0", "--item-loss", "0"])
    assert paper.exit_code == 0, paper.output
    rows = [json.loads(line) for line in (tmp_path / "paper" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert "match" in row and "contrastive" not in row and "item" not in row
        assert row["loss"] == pytest.approx(row["match"])
    assert json.loads((tmp_path / "paper" / "run.json").read_text())["loss_weights"] == {"match": 1.0}
    torch.manual_seed(0)  # the run's seed: the new heads start as the run's did
    start = InterBertForRetrieval.from_pretrained(pre / "model")
    tuned = InterBertForRetrieval.from_pretrained(tmp_path / "paper" / "model")
    for name in ("contrastive", "item_head"):  # contrastive: text_proj, image_proj, logit_scale
        for (key, a), b in zip(getattr(start, name).state_dict().items(), getattr(tuned, name).state_dict().values(),
                               strict=True):
            assert torch.equal(a, b), f"{name}.{key} was trained"
    assert not torch.equal(start.itm_head.dense.weight, tuned.itm_head.dense.weight)  # ITM did train
    half = runner.invoke(app, [*args, "--out", str(tmp_path / "half"), "--contrastive", "0.5", "--item-loss", "0"])
    assert half.exit_code == 0, half.output
    assert json.loads((tmp_path / "half" / "run.json").read_text())["loss_weights"] == {"match": 1.0,
                                                                                         "contrastive": 0.5}
    row = json.loads((tmp_path / "half" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "item" not in row and row["loss"] == pytest.approx(row["match"] + 0.5 * row["contrastive"], rel=1e-5)
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "bad"), "--contrastive", "-1"])
    assert bad.exit_code == 2 and not (tmp_path / "bad").exists()


def test_a_dropout_outside_0_to_1_is_refused(pretrained, tmp_path: Path) -> None:
    store, pre = pretrained
    for dropout in (1.0, -0.1):
        with pytest.raises(TaommError, match="dropout must be in"):
            finetune_retrieval(store, pre, tmp_path / "ft", train=train_config(max_steps=1), dropout=dropout)
