"""Pretraining runs: loss goes down, exact resume, finite-loss guard, crash-safe checkpoints,
SIGTERM, and torchrun DDP against a single process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from helpers import build_pretraining_store
from safetensors.torch import load_file, save_file

from taomm.datasets.pretraining import MaskingOptions, PretrainingData
from taomm.datasets.store import FeatureStore
from taomm.errors import StoreError, TaommError
from taomm.model import InterBertConfig, InterBertForPretraining
from taomm.text.tokenizer import TitleTokenizer
from taomm.train import TrainConfig, Trainer
from taomm.train.checkpoint import MODEL_FILE, STATE_FILE, latest_checkpoint, list_checkpoints
from taomm.train.pretrain import PretrainTask, pretrain, training_ordinals
from taomm.train.recipe import SCRATCH_PRETRAIN
from taomm.train.trainer import NonFiniteLossError, param_groups

TINY = InterBertConfig.from_preset("tiny")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pretraining_store(tmp_path_factory.mktemp("pretrain") / "store", count=48)


def train_config(**kw) -> TrainConfig:
    base = {"max_steps": 20, "batch_size": 8, "log_every": 1, "save_every": 5, "workers": 0, "lr": 2e-3,
            "warmup_steps": 3}
    return TrainConfig(**{**base, **kw})


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_loss_goes_down(store: Path, tmp_path: Path) -> None:
    result, model_dir = pretrain(store, tmp_path / "run", model_config=TINY,
                                 train=train_config(max_steps=60, log_every=10, save_every=100, lr=3e-3))
    rows = metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60]
    assert rows[-1]["msm"] < rows[0]["msm"] - 0.15
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert result.step == 60 and result.skipped == 0 and not result.stopped
    for key in ("loss", "msm", "mrm", "itm", "lr", "samples_per_s"):
        assert key in rows[-1]
    assert "mfu" not in rows[-1]  # CPU: no MFU
    reloaded = InterBertForPretraining.from_pretrained(model_dir)
    assert (model_dir / "vocab.txt").is_file() and reloaded.config.vocab_size == len(TitleTokenizer(store / "vocab.txt"))
    assert list((tmp_path / "run" / "tensorboard").iterdir())


def test_contrastive_task(store: Path, tmp_path: Path) -> None:
    """--itc adds an image-text contrastive loss on each image's own caption; it trains."""
    pretrain(store, tmp_path / "run", model_config=TINY, itc_weight=1.0,
             train=train_config(max_steps=40, log_every=10, save_every=100, lr=3e-3))
    rows = metrics(tmp_path / "run")
    assert rows[-1]["itc"] < rows[0]["itc"] - 0.1
    assert rows[0]["loss"] == pytest.approx(rows[0]["msm"] + rows[0]["mrm"] + rows[0]["itm"] + rows[0]["itc"], rel=1e-4)
    model = InterBertForPretraining.from_pretrained(tmp_path / "run" / "model")
    assert "contrastive.text_proj.weight" not in model.load_report.missing


class Crash(Exception):
    pass


def test_exact_resume(store: Path, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    pretrain(store, straight, model_config=TINY, train=train_config())

    def crash_at_12(step: int, _: dict) -> None:
        if step == 12:
            raise Crash  # after the checkpoint of step 10, before that of 15
    crashed = tmp_path / "crashed"
    with pytest.raises(Crash):
        pretrain(store, crashed, model_config=TINY, train=train_config(), on_step=crash_at_12)
    assert latest_checkpoint(crashed)[0] == 10
    # resumed with DataLoader workers this time: the batches do not depend on them
    result, _ = pretrain(store, crashed, model_config=TINY, train=train_config(workers=2), resume=True)
    assert result.start_step == 10 and result.step == 20
    a, b = metrics(straight), metrics(crashed)
    assert [r["step"] for r in b] == list(range(1, 21))  # the crashed run's steps 11-12 were dropped
    for x, y in zip(a[10:], b[10:], strict=True):
        assert (x["loss"], x["msm"], x["mrm"], x["itm"], x["lr"]) == (y["loss"], y["msm"], y["mrm"], y["itm"], y["lr"])
    state_a = InterBertForPretraining.from_pretrained(straight / "model").state_dict()
    state_b = InterBertForPretraining.from_pretrained(crashed / "model").state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def write_old_layout(checkpoint: Path, model: InterBertForPretraining) -> None:
    """Rewrite a trainer checkpoint of ``model`` as the code before InterBertContrastiveHead
    wrote it: the head's tensors at the top of the weights, and in the optimizer state the
    model's own ``logit_scale`` first of its group (it came first in ``named_parameters``)."""
    weights = load_file(str(checkpoint / MODEL_FILE))
    save_file({k.removeprefix("contrastive."): v for k, v in weights.items()}, str(checkpoint / MODEL_FILE))
    state = torch.load(checkpoint / STATE_FILE, weights_only=True)
    names = {id(p): n for n, p in model.named_parameters()}
    new = dict(state["optimizer"]["state"])  # parameter index -> its AdamW state
    for group, saved in zip(param_groups(model, 0.01), state["optimizer"]["param_groups"], strict=True):
        now = [names[id(p)] for p in group["params"]]
        if "contrastive.logit_scale" in now:
            at = now.index("contrastive.logit_scale")
            assert at > 0  # else the old and the new order agree and this test proves nothing
            moved = saved["params"][at]
            then = [moved, *(i for i in saved["params"] if i != moved)]  # today's indices, in the old order
            for index, source in zip(saved["params"], then, strict=True):
                state["optimizer"]["state"][index] = new[source]
    torch.save(state, checkpoint / STATE_FILE)


def test_resume_from_a_checkpoint_of_the_old_layout(store: Path, tmp_path: Path) -> None:
    """A run checkpointed before the contrastive head became a submodule resumes exactly."""
    straight = tmp_path / "straight"
    pretrain(store, straight, model_config=TINY, itc_weight=1.0, train=train_config(max_steps=10))

    def crash_at_7(step: int, _: dict) -> None:
        if step == 7:
            raise Crash  # after the checkpoint of step 5
    crashed = tmp_path / "crashed"
    with pytest.raises(Crash):
        pretrain(store, crashed, model_config=TINY, itc_weight=1.0, train=train_config(max_steps=10),
                 on_step=crash_at_7)
    config = InterBertConfig.from_json_file(crashed / "config.json")
    write_old_layout(latest_checkpoint(crashed)[1], InterBertForPretraining(config))
    result, _ = pretrain(store, crashed, model_config=TINY, itc_weight=1.0, train=train_config(max_steps=10),
                         resume=True)
    assert result.start_step == 5
    a, b = metrics(straight), metrics(crashed)
    assert [(r["loss"], r["itc"]) for r in a[5:]] == [(r["loss"], r["itc"]) for r in b[5:]]
    state_a = InterBertForPretraining.from_pretrained(straight / "model").state_dict()
    state_b = InterBertForPretraining.from_pretrained(crashed / "model").state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_keep_last_and_refuse_overwrite(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    pretrain(store, run, model_config=TINY, train=train_config(max_steps=12, save_every=3, keep_last=2))
    assert [s for s, _ in list_checkpoints(run)] == [9, 12]
    with pytest.raises(Exception, match="already has checkpoints"):
        pretrain(store, run, model_config=TINY, train=train_config(max_steps=12))
    result, _ = pretrain(store, run, model_config=TINY, train=train_config(max_steps=15, save_every=3), resume=True)
    assert (result.start_step, result.step) == (12, 15)


class NanTask(PretrainTask):
    bad_steps: set[int] = set()

    def loss_sums(self, model, batch, step):
        sums = super().loss_sums(model, batch, step)
        return sums * float("nan") if step in self.bad_steps else sums


def nan_run(store: Path, run: Path, bad: set[int], steps: int):
    with FeatureStore(store) as fs:
        tok = TitleTokenizer(store / "vocab.txt")
        config = InterBertConfig.from_preset("tiny", vocab_size=len(tok), region_feature_dim=32)
        torch.manual_seed(0)
        model = InterBertForPretraining(config)
        task = NanTask(PretrainingData(fs, tok, fs.split("train"), options=MaskingOptions()), config)
        task.bad_steps = bad
        before = {k: v.clone() for k, v in model.state_dict().items()}
        return Trainer(train_config(max_steps=steps, save_every=100)).fit(model, task, run), model, before


def test_nan_step_is_skipped(store: Path, tmp_path: Path) -> None:
    result, model, _ = nan_run(store, tmp_path / "run", {3}, 6)
    assert result.skipped == 1 and result.step == 6
    rows = metrics(tmp_path / "run")
    assert rows[3]["skipped"] == 1 and rows[2]["skipped"] == 0
    assert all(v == v for r in rows if r["step"] != 4 for v in (r["loss"],))  # finite elsewhere
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_steps_in_a_row_stop(store: Path, tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match="5 non-finite steps in a row"):
        nan_run(store, tmp_path / "run", {2, 3, 4, 5, 6}, 10)


def test_nan_first_step_leaves_weights(store: Path, tmp_path: Path) -> None:
    _, model, before = nan_run(store, tmp_path / "run", {0}, 1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_sigkill_while_writing_a_checkpoint(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal
        from safetensors.torch import save_model
        from taomm.model import InterBertConfig
        from taomm.train import TrainConfig, checkpoint
        from taomm.train.pretrain import pretrain

        real, calls = checkpoint._write_files, []

        def dying(folder, model, state):
            calls.append(folder)
            if len(calls) == 2:  # the second checkpoint: half written, then killed
                save_model(model, str(folder / checkpoint.MODEL_FILE))
                os.kill(os.getpid(), signal.SIGKILL)
            real(folder, model, state)

        checkpoint._write_files = dying
        pretrain({str(store)!r}, {str(run)!r}, model_config=InterBertConfig.from_preset("tiny"),
                 train=TrainConfig(max_steps=20, batch_size=8, save_every=5, log_every=1, workers=0))
    """))
    proc = subprocess.run([sys.executable, str(script)], env=child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [s for s, _ in list_checkpoints(run)] == [5]
    partial = run / "checkpoints" / ".tmp-step-00000010"
    assert (partial / MODEL_FILE).is_file()  # the half-written one is there, and ignored
    result, _ = pretrain(store, run, model_config=TINY, resume=True,
                         train=TrainConfig(max_steps=12, batch_size=8, save_every=5, log_every=1, workers=0))
    assert (result.start_step, result.step) == (5, 12)
    assert not partial.exists()  # cleaned up by the next save


def test_sigterm_checkpoints_and_exits_zero(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "taomm", "pretrain", "--store", str(store), "--out", str(run), "--config", "tiny",
           "--max-steps", "100000", "--batch-size", "4", "--save-every", "100000", "--log-every", "1",
           "--workers", "0", "--json"]
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run / "metrics.jsonl").exists() and len((run / "metrics.jsonl").read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["stopped"] is True and summary["model"] is None
    step = summary["step"]
    assert latest_checkpoint(run)[0] == step >= 3
    with pytest.raises(TaommError, match="other settings"):  # the CLI's from-scratch default has ITC on
        pretrain(store, run, model_config=TINY, resume=True, itc_weight=0.0,
                 train=TrainConfig(max_steps=step + 2, batch_size=4, log_every=1, workers=0))
    result, model_dir = pretrain(store, run, model_config=TINY, resume=True, itc_weight=SCRATCH_PRETRAIN.itc,
                                 train=TrainConfig(max_steps=step + 2, batch_size=4, log_every=1, workers=0))
    assert (result.start_step, result.step) == (step, step + 2) and model_dir is not None


def test_a_sigterm_during_the_step_all_reduce_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM that lands after the step's flags were packed (here: inside the all-reduce)
    still stops the run at the next step; it once was overwritten by the packed 0."""
    from taomm.train import trainer as trainer_module

    trainer = Trainer(TrainConfig(max_steps=10, batch_size=4, workers=0))

    def reduce_then_signal(tensor, info):
        trainer.request_stop()
        return tensor

    monkeypatch.setattr(trainer_module, "all_reduce_sum", reduce_then_signal)
    means, bad, flops = trainer._all_reduce(torch.tensor([2.0, 4.0]), torch.tensor([2.0, 2.0]), 0.0)
    assert means.tolist() == [1.0, 2.0] and not bad and trainer._stop


def test_torchrun_matches_single_process(store: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.json"  # no dropout: the ranks' dropout draws differ from one process's
    config.write_text(json.dumps({"preset": "tiny", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}))
    args = ["pretrain", "--store", str(store), "--config", str(config), "--max-steps", "4", "--batch-size", "8",
            "--log-every", "1", "--workers", "1", "--fp32", "--lr", "1e-3", "--itc", "0.5", "--json"]
    single = subprocess.run([sys.executable, "-m", "taomm", *args, "--out", str(tmp_path / "one")],
                            env=child_env(), capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "taomm", *args, "--out", str(tmp_path / "two")],
                         env=child_env(), capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert json.loads(ddp.stdout)["world_size"] == 2
    a, b = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert len(a) == len(b) == 4
    for x, y in zip(a, b, strict=True):
        for key in ("loss", "msm", "mrm", "itm", "itc"):  # itc: negatives gathered from the other rank
            assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-5), (x["step"], key)


def test_training_ordinals_join_splits_with_plus(small_store: Path) -> None:
    with FeatureStore(small_store) as reader:
        train, val, test = (set(reader.split(name).tolist()) for name in ("train", "val", "test"))
        assert set(training_ordinals(reader, None).tolist()) == train  # the default: train
        joined = training_ordinals(reader, "train+val")
        assert joined.tolist() == sorted(train | val) and not set(joined.tolist()) & test
        assert training_ordinals(reader, "test+test").tolist() == sorted(test)  # each item once
        with pytest.raises(StoreError, match="no split 'unlabelled'"):
            training_ordinals(reader, "train+unlabelled")


def test_initial_weights_are_where_pretraining_starts(store: Path, tmp_path: Path) -> None:
    """The "finetuned from random weights" baseline starts where pretraining with the same seed
    starts: one Adam step (each weight moves by at most about lr) apart, not another draw."""
    from taomm.train.pretrain import save_initial_weights

    initial = save_initial_weights(store, tmp_path / "init", model_config=TINY, seed=3)
    _, model_dir = pretrain(store, tmp_path / "run", model_config=TINY, itc_weight=1.0,
                            train=train_config(max_steps=1, lr=1e-3, warmup_steps=0, seed=3, save_every=100))
    start, after = load_file(initial / "model.safetensors"), load_file(model_dir / "model.safetensors")
    assert set(start) == set(after) and json.loads((initial / "config.json").read_text()) == \
        json.loads((model_dir / "config.json").read_text())
    assert max((start[k] - after[k]).abs().max().item() for k in start) < 2e-3
    other = load_file(save_initial_weights(store, tmp_path / "other", model_config=TINY, seed=4) / "model.safetensors")
    assert max((start[k] - other[k]).abs().max().item() for k in start) > 0.05
    assert (initial / "vocab.txt").read_text() == (store / "vocab.txt").read_text()


def test_held_out_accuracy_leaves_training_as_it_was(store: Path, tmp_path: Path) -> None:
    """--eval-every writes the tasks' held-out accuracy every N steps and at the last; the
    evaluation draws from no training RNG, so the losses equal those of a run without it."""
    from taomm.errors import OptionError
    from taomm.train.pretrain import HELDOUT_FILE, HeldOut

    cfg = train_config(max_steps=7, save_every=100)
    pretrain(store, tmp_path / "plain", model_config=TINY, itc_weight=1.0, train=cfg)
    pretrain(store, tmp_path / "held", model_config=TINY, itc_weight=1.0, train=cfg,
             held_out=HeldOut("test", every=3, items=10))
    assert [r["loss"] for r in metrics(tmp_path / "held")] == [r["loss"] for r in metrics(tmp_path / "plain")]
    rows = [json.loads(line) for line in (tmp_path / "held" / HELDOUT_FILE).read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6, 7] and all(r["pairs"] == 10 for r in rows)
    assert all(0.0 <= r[k] <= 1.0 for r in rows for k in ("msm_acc", "mrm_acc", "itm_acc"))
    assert not (tmp_path / "plain" / HELDOUT_FILE).exists()
    with pytest.raises(OptionError, match="overlaps the training split"):
        pretrain(store, tmp_path / "overlap", model_config=TINY, train=cfg, split="train+test",
                 held_out=HeldOut("test", every=3))
