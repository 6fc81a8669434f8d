"""The product detector: extraction contract, save/load, a short training run, CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.datasets.demo_catalog import generate_catalog
from taomm.datasets.store import FeatureStore
from taomm.detectors.detector import DetectorConfig, ProductDetector
from taomm.detectors.training import CocoBoxes, image_ids_for_split, train_detector
from taomm.errors import TaommError
from taomm.taxonomy import load_taxonomy

CLASSES = list(load_taxonomy("taobao33").classes)


@pytest.fixture(scope="module")
def detector() -> ProductDetector:
    torch.manual_seed(0)
    return ProductDetector(DetectorConfig(classes=CLASSES, attributes={"colour": ["红", "蓝"]})).eval()


def images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 120, 200, generator=g), torch.rand(3, 64, 48, generator=g)]


def test_extraction_contract(detector: ProductDetector) -> None:
    for image, regions in zip(images(), detector.extract(images(), max_regions=16, min_score=0.0), strict=True):
        _, h, w = image.shape
        n = regions["boxes"].shape[0]
        assert 1 <= n <= 16
        assert regions["features"].shape == (n, 2048)
        assert regions["labels"].shape == (n,) and regions["scores"].shape == (n,)
        b = regions["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= h).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert ((regions["labels"] >= 0) & (regions["labels"] < 33)).all()
        assert (regions["scores"][:-1] >= regions["scores"][1:]).all()  # by score, best first


def test_whole_image_fallback(detector: ProductDetector) -> None:
    (regions,) = detector.extract(images()[:1], min_score=1.01)  # nothing can pass
    assert regions["boxes"].tolist() == [[0.0, 0.0, 200.0, 120.0]]
    assert regions["features"].shape == (1, 2048)


def test_save_load_round_trip(detector: ProductDetector, tmp_path: Path) -> None:
    detector.save(tmp_path / "det")
    loaded = ProductDetector.load(tmp_path / "det").eval()
    assert loaded.config == detector.config
    a, b = detector.extract(images()[:1], min_score=0.0), loaded.extract(images()[:1], min_score=0.0)
    assert torch.equal(a[0]["features"], b[0]["features"])
    with pytest.raises(TaommError, match="not a taomm detector"):
        ProductDetector.load(tmp_path / "nothing")
    with pytest.raises(TaommError, match="unknown detector backbone"):
        ProductDetector(DetectorConfig(classes=CLASSES, backbone="vgg"))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("catalog")
    generate_catalog(out, items=24, seed=3, image_size=96)
    return out


def test_coco_dataset_and_splits(catalog: Path) -> None:
    data = CocoBoxes(catalog / "annotations.json", catalog / "images")
    image, target, image_id = data[0]
    assert image.shape == (3, 96, 96) and image.min() >= 0 and image.max() <= 1
    vocab = data.attribute_vocab
    assert target["boxes"].shape[1] == 4 and target["attributes"].shape[1] == sum(len(v) for v in vocab.values())
    assert len(vocab["colour"]) == 11 and len(vocab["pattern"]) == 5 and "荷叶边" in vocab["style"]
    assert ((target["attributes"].sum(1) >= 3) & (target["attributes"].sum(1) <= 4)).all()  # + style when any
    train = image_ids_for_split(catalog / "annotations.json", catalog / "items.jsonl", "train")
    test = image_ids_for_split(catalog / "annotations.json", catalog / "items.jsonl", "test")
    assert train and test and not set(train) & set(test)


def test_training_lowers_the_loss(catalog: Path, tmp_path: Path) -> None:
    result = train_detector(catalog / "annotations.json", catalog / "images", tmp_path / "det", CLASSES,
                            max_steps=6, batch_size=4, warmup=2, workers=0)
    assert result.steps == 6 and all(map(torch.isfinite, torch.tensor(result.losses)))
    assert result.losses[-1] < result.losses[0]
    assert ProductDetector.load(tmp_path / "det").config.attributes["pattern"][0] == "纯色"


def test_cli_end_to_end_in_a_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["init", ".", "--demo", "--items", "16"]).exit_code == 0
    trained = runner.invoke(app, ["train-detector", "--max-steps", "2", "--batch-size", "2", "--workers", "0",
                                  "--json"])
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["steps"] == 2 and (tmp_path / "runs" / "detector" / "detector.json").is_file()
    evaluated = runner.invoke(app, ["evaluate-detector", "--workers", "0", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)
    assert 0.0 <= metrics["mAP"] <= metrics["mAP@0.5"] <= 1.0 and metrics["images"] >= 1
    prepared = runner.invoke(app, ["prepare", "--workers", "0", "--json"])
    assert prepared.exit_code == 0, prepared.output
    report = json.loads(prepared.stdout)
    assert report["inputs"] == 16 and report["ok"] + report["quarantined"] == 16
    with FeatureStore(tmp_path / "store") as store:
        assert len(store) == report["ok"]
        item = store[0]
        assert 1 <= item.num_regions <= 16 and item.features.shape[1] == 2048
    assert (tmp_path / "store" / "quarantine.jsonl").is_file() and (tmp_path / "store" / "report.json").is_file()
    again = runner.invoke(app, ["prepare", "--workers", "0", "--json"])
    assert json.loads(again.stdout)["written"] == 0


def test_cli_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["train-detector"])
    assert result.exit_code == 1 and "no annotations" in result.stderr
    result = runner.invoke(app, ["prepare", "items.jsonl", "--out", "s", "--detector", "nothing"])
    assert result.exit_code == 1 and "not a taomm detector" in result.stderr
    result = runner.invoke(app, ["prepare", "items.jsonl", "--out", "s", "--detector", "d", "--shard", "x"])
    assert result.exit_code == 1


def test_attribute_loss_is_a_cross_entropy_per_group() -> None:
    torch.manual_seed(0)
    config = DetectorConfig(classes=CLASSES[:3], representation_size=16,
                            attributes={"colour": ["红", "蓝", "白"], "style": ["荷叶边", "百褶"]})
    detector = ProductDetector(config)
    logits = torch.randn(3, 5)
    wanted = torch.tensor([[1, 0, 0, 0, 1], [0, 0, 1, 0, 0], [0, 1, 0, 1, 0]], dtype=torch.float32)  # box 1: no style
    import torch.nn.functional as F

    expected = (F.cross_entropy(logits[:, :3], torch.tensor([0, 2, 1])) +
                F.cross_entropy(logits[[0, 2], 3:], torch.tensor([1, 0]))) / 2
    assert torch.allclose(detector.attribute_loss(logits, wanted), expected)
    assert detector.attribute_loss(logits, torch.zeros(3, 5)) == 0  # no attribute at all: nothing to learn
