"""Training defaults by where the model starts: the paper's from BERT, the demo's from scratch,
one owner (taomm.train.recipe) for the commands and the demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import build_pretraining_store
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.model import InterBertConfig
from taomm.train import TrainConfig
from taomm.train.pretrain import pretrain
from taomm.train.recipe import (
    BERT_FINETUNE,
    BERT_PRETRAIN,
    SCRATCH_FINETUNE,
    SCRATCH_PRETRAIN,
    finetune_defaults,
    initialised_from,
    pretrain_defaults,
    resolve_finetune,
    resolve_pretrain,
)


def test_defaults_follow_where_the_model_starts() -> None:
    assert pretrain_defaults(from_scratch=True) == SCRATCH_PRETRAIN
    assert (SCRATCH_PRETRAIN.lr, SCRATCH_PRETRAIN.itc) == (3e-4, 1.0)
    assert (BERT_PRETRAIN.lr, BERT_PRETRAIN.itc) == (1e-4, 0.0)  # the paper's
    assert finetune_defaults(from_scratch=True) == SCRATCH_FINETUNE
    assert (SCRATCH_FINETUNE.lr, SCRATCH_FINETUNE.negatives, SCRATCH_FINETUNE.log_share,
            SCRATCH_FINETUNE.item_loss, SCRATCH_FINETUNE.dropout) == (1e-3, 1, 0.8, 3.0, None)
    assert finetune_defaults(from_scratch=False) == BERT_FINETUNE
    assert (BERT_FINETUNE.lr, BERT_FINETUNE.negatives, BERT_FINETUNE.log_share, BERT_FINETUNE.item_loss,
            BERT_FINETUNE.dropout) == (4e-5, 3, 0.5, 1.0, None)  # the model's own dropout (BERT's 0.1)


def test_given_values_replace_only_their_default() -> None:
    recipe, warning = resolve_pretrain(True, lr=5e-4)
    assert (recipe.lr, recipe.itc, warning) == (5e-4, 1.0, None)
    recipe, warning = resolve_finetune(False, negatives=1)
    assert (recipe.lr, recipe.negatives, recipe.log_share, warning) == (4e-5, 1, 0.5, None)
    assert resolve_finetune(True, log_share=0.0)[0].log_share == 0.0  # 0 is a value, not "unset"
    assert resolve_finetune(True, dropout=0.1)[0].dropout == 0.1 and resolve_finetune(False, dropout=0.0)[0].dropout == 0.0
    assert resolve_finetune(True, item_loss=0.0)[0].item_loss == 0.0 and resolve_finetune(False, item_loss=3)[0].item_loss == 3


@pytest.mark.parametrize(("resolve", "given", "named"), [
    (resolve_pretrain, {"itc": 0.0}, "itc 0"),
    (resolve_pretrain, {"lr": 1e-4}, "lr 0.0001"),
    (resolve_pretrain, {"lr": 5e-5, "itc": 0.0}, "itc 0, lr 5e-05"),
    (resolve_finetune, {"lr": 4e-5}, "lr 4e-05"),
])
def test_the_papers_settings_on_a_model_from_scratch_warn(resolve, given, named) -> None:
    _, warning = resolve(True, **given)
    assert warning.startswith(f"{named} on a model from scratch: the paper's settings assume a BERT initialisation")
    assert "\n" not in warning
    assert resolve(False, **given)[1] is None  # from BERT they are the recipe


def test_no_warning_for_the_from_scratch_recipe_or_a_higher_lr() -> None:
    assert resolve_pretrain(True)[1] is None and resolve_pretrain(True, lr=2e-4, itc=0.5)[1] is None
    assert resolve_finetune(True)[1] is None and resolve_finetune(True, lr=1e-4, negatives=3)[1] is None


def test_initialised_from_reads_the_run_record(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    assert initialised_from(run) is None and initialised_from(run / "model") is None  # no record: from scratch
    (run / "run.json").write_text(json.dumps({"init_from": "bert-base-chinese"}))
    assert initialised_from(run) == initialised_from(run / "model") == "bert-base-chinese"
    (run / "run.json").write_text(json.dumps({"init_from": None}))
    assert initialised_from(run / "model") is None
    (run / "run.json").write_text("not json")
    assert initialised_from(run) is None
    elsewhere = tmp_path / "model"  # a model folder outside a run: no record
    elsewhere.mkdir()
    assert initialised_from(elsewhere) is None


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("recipe")
    store = build_pretraining_store(root / "store", count=24)
    pretrain(store, root / "pretrain", model_config=InterBertConfig.from_preset("tiny"),
             train=TrainConfig(max_steps=2, batch_size=4, workers=0, save_every=100))
    return store, root / "pretrain"


FAST = ["--max-steps", "2", "--batch-size", "4", "--workers", "0", "--json"]


def test_finetuning_a_model_from_scratch_defaults_to_the_demo_recipe(pretrained, tmp_path: Path) -> None:
    store, pre = pretrained
    result = CliRunner().invoke(app, ["finetune-retrieval", "--store", str(store), "--init", str(pre), "--out",
                                      str(tmp_path / "ft"), *FAST])
    assert result.exit_code == 0, result.output
    options = json.loads((tmp_path / "ft" / "run.json").read_text())
    assert (options["train"]["lr"], options["negatives"], options["init_from"]) == (1e-3, 1, None)
    assert "recipe: from scratch" in result.stderr and "lr 0.001, 2-way ITM, log share 0.8, item loss 3" in result.stderr
    assert options["dropout"] == {"hidden": 0.1, "attention": 0.1}  # the model's own
    assert options["loss_weights"] == {"match": 1.0, "contrastive": 1.0, "item": 3.0}
    weighed = CliRunner().invoke(app, ["finetune-retrieval", "--store", str(store), "--init", str(pre), "--out",
                                       str(tmp_path / "item2"), "--item-loss", "2", *FAST])
    assert weighed.exit_code == 0, weighed.output
    assert "log share 0.8, item loss 2" in weighed.stderr
    assert json.loads((tmp_path / "item2" / "run.json").read_text())["loss_weights"]["item"] == 2.0
    given = CliRunner().invoke(app, ["finetune-retrieval", "--store", str(store), "--init", str(pre), "--out",
                                     str(tmp_path / "drop"), "--dropout", "0", *FAST])
    assert given.exit_code == 0, given.output
    assert "log share 0.8, item loss 3, dropout 0" in given.stderr
    assert json.loads((tmp_path / "drop" / "run.json").read_text())["dropout"] == {"hidden": 0.0, "attention": 0.0}
    saved = json.loads((tmp_path / "drop" / "model" / "config.json").read_text())
    assert (saved["hidden_dropout_prob"], saved["attention_probs_dropout_prob"]) == (0.0, 0.0)
    warned = CliRunner().invoke(app, ["finetune-retrieval", "--store", str(store), "--init", str(pre / "model"),
                                      "--out", str(tmp_path / "low"), "--lr", "4e-5", *FAST])
    assert warned.exit_code == 0, warned.output
    assert "taomm: warning: lr 4e-05 on a model from scratch" in warned.stderr


def test_finetuning_a_model_pretrained_from_bert_defaults_to_the_papers(pretrained, tmp_path: Path) -> None:
    store, pre = pretrained
    run = tmp_path / "pre"  # the same weights, recorded as initialised from a BERT
    (run / "model").mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        (run / "model" / name).write_bytes((pre / "model" / name).read_bytes())
    (run / "run.json").write_text(json.dumps({**json.loads((pre / "run.json").read_text()), "init_from": "bert"}))
    result = CliRunner().invoke(app, ["finetune-retrieval", "--store", str(store), "--init", str(run), "--out",
                                      str(tmp_path / "ft"), *FAST])
    assert result.exit_code == 0, result.output
    options = json.loads((tmp_path / "ft" / "run.json").read_text())
    assert (options["train"]["lr"], options["negatives"], options["init_from"]) == (4e-5, 3, "bert")
    assert "recipe: pretrained from bert (the paper's): lr 4e-05, 4-way ITM, log share 0.5, item loss 1" in result.stderr
    assert options["loss_weights"] == {"match": 1.0, "contrastive": 1.0, "item": 1.0}
    tiny = InterBertConfig.from_preset("tiny")  # the model's own dropout
    assert options["dropout"] == {"hidden": tiny.hidden_dropout_prob, "attention": tiny.attention_probs_dropout_prob}
    assert "warning" not in result.stderr
    again = CliRunner().invoke(app, ["finetune-retrieval", "--store", str(store), "--init", str(tmp_path / "ft"),
                                     "--out", str(tmp_path / "ft2"), *FAST])
    assert again.exit_code == 0 and "(the paper's)" in again.stderr  # the record passes on through finetuning
