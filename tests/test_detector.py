"""The product detector: extraction contract, save/load, a short training run, CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.datasets.demo_catalog import generate_catalog
from taomm.datasets.store import FeatureStore
from taomm.detectors.detector import DetectorConfig, ProductDetector, select_regions
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


def test_default_threshold_keeps_scores_strictly_above_0_1_and_at_most_16() -> None:
    """The paper's zh regions, at the defaults: a score of exactly 0.1 is dropped, one just
    above is kept, and of 20 confident non-overlapping boxes the best 16 remain."""
    import inspect

    def boxes(n: int) -> torch.Tensor:  # n disjoint 10 x 10 boxes in a row: NMS keeps them all
        x = torch.arange(n, dtype=torch.float32) * 20
        return torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], 1)

    scores = torch.tensor([0.1, 0.1000001, 0.5, 0.09999999, 0.0], dtype=torch.float32)
    assert select_regions(boxes(5), scores).tolist() == [2, 1]  # by decreasing score
    many = torch.linspace(0.2, 0.9, 20)
    assert select_regions(boxes(20), many).tolist() == list(range(19, 3, -1))
    for name in ("max_regions", "min_score"):  # extraction's defaults are the same
        assert inspect.signature(ProductDetector.extract).parameters[name].default == \
            inspect.signature(select_regions).parameters[name].default


def test_extract_at_the_default_threshold() -> None:
    """The detector end to end with its class scores fed: fixed proposals (the RPN's output)
    and box-predictor logits that give them the scores below, no box regression."""
    from torchvision.models.detection.image_list import ImageList

    proposals = torch.tensor([[0.0, 0.0, 20.0, 20.0], [40.0, 0.0, 60.0, 20.0], [80.0, 0.0, 100.0, 20.0],
                              [0.0, 40.0, 20.0, 60.0]])
    wanted = torch.tensor([0.1, 0.1000001, 0.7, 0.05], dtype=torch.float64)
    logits = torch.full((4, len(CLASSES) + 1), -1e4, dtype=torch.float64)  # softmax: p on class 3, 1 - p background
    logits[:, 4] = torch.log(wanted)
    logits[:, 0] = torch.log(1 - wanted)
    logits[0, :10] = 0.0  # ten equal classes: 1 / 10, exactly float32(0.1) (a correctly rounded division)

    class Proposals(torch.nn.Module):
        def forward(self, images: ImageList, features, targets=None):
            return [proposals.clone() for _ in images.image_sizes], {}

    class Scores(torch.nn.Module):
        def forward(self, vectors: torch.Tensor):
            return logits.float().repeat(len(vectors) // 4, 1), torch.zeros(len(vectors), 4 * (len(CLASSES) + 1))

    torch.manual_seed(0)
    detector = ProductDetector(DetectorConfig(classes=CLASSES)).eval()  # its own: two parts replaced
    detector.rcnn.rpn = Proposals()
    detector.rcnn.roi_heads.box_predictor = Scores()
    image = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))  # 128 px: no resize
    probs = logits.float().softmax(-1)[:, 1:].max(-1).values
    assert probs[0] == torch.tensor(0.1, dtype=torch.float32)  # exactly the threshold in float32
    assert probs[1] > probs[0] and probs[3] < probs[0]
    (regions,) = detector.extract([image])
    assert regions["scores"].tolist() == [probs[2].item(), probs[1].item()]
    assert regions["boxes"].tolist() == [proposals[2].tolist(), proposals[1].tolist()]
    assert regions["labels"].tolist() == [3, 3]


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
    assert 0.0 <= metrics["boxes_mAP@0.5"] <= 1.0
    probe = metrics["probe"]  # fitted on the train split's regions, scored on the test split's
    assert probe["fit"] == "train" and probe["boxes"]["train"] > probe["boxes"]["test"] > 0
    assert probe["groups"] and all(0 <= row["majority"] <= 1 for row in probe["groups"].values())
    shown = runner.invoke(app, ["evaluate-detector", "--workers", "0"])
    assert shown.exit_code == 0 and "linear probe" in shown.stdout and "majority" in shown.stdout
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


def test_attribute_loss_on_sampled_foreground_rois(catalog: Path) -> None:
    # The sampled foreground RoIs learn the attributes of the box they were matched to; a
    # batch without attributes has no attribute loss, and "gt" still runs on the boxes alone.
    data = CocoBoxes(catalog / "annotations.json", catalog / "images")
    torch.manual_seed(0)
    model = ProductDetector(DetectorConfig(classes=CLASSES, attributes=data.attribute_vocab, min_size=96,
                                           max_size=192)).train()
    images_, targets = zip(*[data[i][:2] for i in range(2)], strict=True)
    for rois in ("sampled", "gt"):
        losses = model.losses(list(images_), list(targets), attribute_rois=rois)
        assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg",
                               "loss_attributes"}
        assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_attributes"] > 0
    bare = [{k: v for k, v in t.items() if k != "attributes"} for t in targets]
    assert "loss_attributes" not in model.losses(list(images_), bare)


def test_linear_probe_reads_what_the_features_carry() -> None:
    from taomm.detectors.probe import RegionSamples, probe_attributes

    g = np.random.default_rng(0)
    vocab = {"pattern": ["纯色", "波点", "条纹"], "colour": ["红色", "蓝色"]}

    def samples(n: int) -> RegionSamples:
        pattern = g.integers(0, 3, n)
        colour = g.integers(0, 2, n)
        features = g.normal(size=(n, 32)).astype(np.float32)
        features[:, 0] += 6 * pattern  # pattern is in the features, colour is not
        values = {"pattern": [vocab["pattern"][p] for p in pattern],
                  "colour": [vocab["colour"][c] for c in colour]}
        values["pattern"][0] = None  # a box without the group is left out
        return RegionSamples(features, values, np.ones(n, np.float32))

    result = probe_attributes(samples(400), samples(200), vocab)
    assert result["pattern"]["accuracy"] > 0.95 and result["pattern"]["test"] == 199
    assert result["pattern"]["majority"] < 0.5
    assert result["colour"]["accuracy"] < 0.65  # chance: nothing to read
    assert result["colour"]["train"] == 400


def test_probe_detector_matches_regions_to_boxes(catalog: Path, detector: ProductDetector) -> None:
    from taomm.detectors.probe import probe_detector

    data = CocoBoxes(catalog / "annotations.json", catalog / "images")
    vocab = data.attribute_vocab
    model = ProductDetector(DetectorConfig(classes=CLASSES, attributes=vocab, min_size=96, max_size=192)).eval()
    ids = [im["id"] for im in data.images]
    result = probe_detector(model, catalog / "annotations.json", catalog / "images", ids[:16], ids[16:])
    boxes = sum(len(data.annotations[i]) for i in ids[16:])
    assert result["boxes"]["test"] == boxes and 0 < result["mean_iou"] <= 1
    assert {"colour", "pattern", "product"} <= set(result["groups"])
    for row in result["groups"].values():
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["majority"] <= 1 and row["test"] <= boxes


def _torchvision_coco_layout(path: Path) -> dict[str, torch.Tensor]:
    """A state dict in torchvision's Faster R-CNN layout (as fasterrcnn_resnet50_fpn's COCO
    weights: frozen BatchNorm, 1024-d box head, 91 classes), with a ResNet-18 to stay small."""
    from safetensors.torch import save_file
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import FrozenBatchNorm2d

    torch.manual_seed(1)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=FrozenBatchNorm2d)
    state = FasterRCNN(backbone, num_classes=91).state_dict()
    save_file(state, str(path))
    return state


def test_train_from_torchvision_detection_weights(catalog: Path, tmp_path: Path) -> None:
    state = _torchvision_coco_layout(tmp_path / "coco_layout.safetensors")
    result = train_detector(catalog / "annotations.json", catalog / "images", tmp_path / "det", CLASSES,
                            max_steps=2, batch_size=2, warmup=1, workers=0, image_size=96,
                            weights=str(tmp_path / "coco_layout.safetensors"))
    report = result.pretrained
    assert report["layout"] == "detection"
    new = {k for k in state if k.startswith(("roi_heads.box_head.", "roi_heads.box_predictor."))}
    assert set(report["new"]) == new and report["loaded"] == len(state) - len(new)  # every key accounted for
    assert "rcnn.roi_heads.box_head.fc6.weight" in report["initialised"] and "attribute_head.weight" in \
        report["initialised"] and not any(k.startswith("rcnn.backbone.") for k in report["initialised"])
    trained = ProductDetector.load(tmp_path / "det")
    assert trained.config.norm == "frozen" and trained.config.weights.endswith("coco_layout.safetensors")
    # frozen stages keep the pretrained weights; trained ones moved
    assert torch.equal(trained.state_dict()["rcnn.backbone.body.conv1.weight"], state["backbone.body.conv1.weight"])
    assert not torch.equal(trained.state_dict()["rcnn.backbone.body.layer4.0.conv1.weight"],
                           state["backbone.body.layer4.0.conv1.weight"])
    assert torch.equal(trained.state_dict()["rcnn.backbone.body.bn1.running_mean"],
                       state["backbone.body.bn1.running_mean"])  # frozen BatchNorm statistics


def test_torchvision_backbone_weights_and_errors(tmp_path: Path) -> None:
    import torchvision

    from taomm.detectors.detector import load_pretrained, pretrained_state

    torch.manual_seed(2)
    resnet = torchvision.models.resnet18().state_dict()
    torch.save(resnet, tmp_path / "resnet18.pth")  # tensors only: read back with weights_only=True
    state = pretrained_state(str(tmp_path / "resnet18.pth"), "resnet18")
    model = ProductDetector(DetectorConfig(classes=CLASSES, norm="frozen", trainable_layers=3))
    report = load_pretrained(model, state)
    tracked = [k for k in resnet if k.endswith("num_batches_tracked")]
    assert report["layout"] == "backbone" and report["new"] == ["fc.weight", "fc.bias"]
    assert sorted(report["dropped"]) == sorted(tracked)
    assert report["loaded"] + len(report["new"]) + len(report["dropped"]) == len(resnet)
    assert torch.equal(model.state_dict()["rcnn.backbone.body.layer3.1.conv2.weight"], resnet["layer3.1.conv2.weight"])
    torch.save({"model": resnet}, tmp_path / "checkpoint.pth")  # torchvision's reference checkpoints
    assert pretrained_state(str(tmp_path / "checkpoint.pth"), "resnet18").keys() == resnet.keys()

    with pytest.raises(TaommError, match="do not fit a resnet34"):
        load_pretrained(ProductDetector(DetectorConfig(classes=CLASSES, backbone="resnet34", norm="frozen")), state)
    with pytest.raises(TaommError, match="neither of torchvision's layouts"):
        load_pretrained(model, {"encoder.weight": torch.zeros(2)})
    with pytest.raises(TaommError, match="use `backbone=resnet50`"):
        pretrained_state("coco", "resnet18")
    with pytest.raises(TaommError, match="not coco, imagenet or a file"):
        pretrained_state(str(tmp_path / "missing.pth"), "resnet18")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(TaommError, match="cannot read weights"):
        pretrained_state(str(tmp_path / "junk.pth"), "resnet18")


def test_bf16_only_where_the_hardware_has_it() -> None:
    from taomm.device import autocast, bf16_supported, use_bf16

    assert use_bf16(False, "cpu") is False
    assert use_bf16(True, "cpu") is bf16_supported("cpu")
    with autocast("cpu", True):
        out = torch.ones(4, 4) @ torch.ones(4, 4)
    assert out.dtype == (torch.bfloat16 if bf16_supported("cpu") else torch.float32)


def test_narrow_feature_pyramid_keeps_the_region_contract(tmp_path: Path) -> None:
    torch.manual_seed(0)
    narrow = ProductDetector(DetectorConfig(classes=CLASSES, fpn_channels=64)).eval()
    assert narrow.rcnn.backbone.out_channels == 64 and narrow.rcnn.rpn.head.conv[0][0].in_channels == 64
    (regions,) = narrow.extract(images()[:1], min_score=0.0)
    assert regions["features"].shape[1] == 2048  # the paper's region feature, whatever the pyramid width
    narrow.save(tmp_path / "det")
    loaded = ProductDetector.load(tmp_path / "det").eval()
    assert loaded.config.fpn_channels == 64
    assert torch.equal(loaded.extract(images()[:1], min_score=0.0)[0]["features"], regions["features"])
