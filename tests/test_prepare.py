"""`prepare`: bad inputs end in the quarantine, good ones in the store, and reruns resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taomm.datasets.prepare import in_shard, prepare_store
from taomm.datasets.store import FeatureStore
from taomm.taxonomy import load_taxonomy

CLASSES = list(load_taxonomy("taobao33").classes)
DIM = 8


def fake_extract(image: torch.Tensor) -> dict[str, np.ndarray]:
    """A stand-in detector for the pipeline tests: one region per image quadrant with the
    quadrant's mean colour as its feature (deterministic, depends on the pixels only)."""
    _, h, w = image.shape
    boxes, feats = [], []
    for x0, y0 in ((0, 0), (w // 2, 0), (0, h // 2), (w // 2, h // 2)):
        x1, y1 = max(x0 + 1, x0 + w // 2), max(y0 + 1, y0 + h // 2)
        x1, y1 = min(x1, w), min(y1, h)
        if x1 > x0 and y1 > y0:
            patch = image[:, y0:y1, x0:x1].float().mean(dim=(1, 2)) / 255
            boxes.append([x0, y0, x1, y1])
            feats.append(np.concatenate([patch.numpy(), np.zeros(DIM - 3)]))
    n = len(boxes)
    return {"boxes": np.asarray(boxes, np.float32), "features": np.asarray(feats, np.float32),
            "labels": np.arange(n) % 33, "scores": np.full(n, 0.9, np.float32)}


def write_catalog(root: Path) -> tuple[Path, dict[str, str]]:
    """A manifest with every bad-input kind and odd-but-valid images; returns it and the
    expected verdict per line (item id or 'line N' -> reason or 'ok')."""
    img = root / "img"
    img.mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(img / "ok.jpg")
    Image.new("CMYK", (20, 20), (0, 100, 100, 0)).save(img / "cmyk.jpg")
    Image.new("RGBA", (16, 16), (0, 0, 255, 128)).save(img / "rgba.png")
    Image.new("P", (12, 12)).save(img / "palette.gif")
    Image.new("I;16", (10, 10), 40000).save(img / "deep.png")
    Image.new("RGB", (1, 1)).save(img / "dot.png")
    Image.new("RGB", (9, 7), (0, 200, 0)).save(img / "green.webp")
    (img / "zero.jpg").write_bytes(b"")
    (img / "random.jpg").write_bytes(os.urandom(500))
    good = (img / "ok.jpg").read_bytes()
    (img / "truncated.jpg").write_bytes(good[: len(good) // 2])
    Image.new("1", (20000, 20000)).save(img / "bomb.png")
    (root.parent / "secret.jpg").write_bytes(good)
    os.symlink(root.parent / "secret.jpg", img / "escape.jpg")
    rows = [
        ('{"item_id": "a1", "title": "红色波点连衣裙", "image": "img/ok.jpg", "split": "train"}', "a1", "ok"),
        ('{"item_id": "a2", "title": "韓版顯瘦半身裙", "image": "img/cmyk.jpg", "split": "test"}', "a2", "ok"),
        ('{"item_id": "a3", "title": "透明手机壳", "image": "img/rgba.png"}', "a3", "ok"),
        ('{"item_id": "a4", "title": "格子抱枕", "image": "img/palette.gif", "split": "train"}', "a4", "ok"),
        ('{"item_id": "a5", "title": "灰色马克杯", "image": "img/deep.png"}', "a5", "ok"),
        ('{"item_id": "a6", "title": "迷你发夹", "image": "img/dot.png"}', "a6", "ok"),
        ('{"item_id": "a7", "title": "绿色帐篷", "image": "img/green.webp", "split": "val"}', "a7", "ok"),
        ('{"item_id": "b1", "title": "Polka dot skirt", "image": "img/ok.jpg"}', "b1", "no_chinese"),
        ('{"item_id": "b2", "title": "   ", "image": "img/ok.jpg"}', "b2", "empty"),
        ('{"item_id": "b3", "title": "连衣裙加微信13812345678", "image": "img/ok.jpg"}', "b3", "spam:contact"),
        ('{"item_id": "b4", "image": "img/ok.jpg"}', "b4", "missing_title"),
        ('{"item_id": "b5", "title": "连衣裙", "image": "img/none.jpg"}', "b5", "image_missing"),
        ('{"item_id": "b6", "title": "连衣裙", "image": "img/zero.jpg"}', "b6", "image_unreadable"),
        ('{"item_id": "b7", "title": "连衣裙", "image": "img/random.jpg"}', "b7", "image_unreadable"),
        ('{"item_id": "b8", "title": "连衣裙", "image": "img/truncated.jpg"}', "b8", "image_unreadable"),
        ('{"item_id": "b9", "title": "连衣裙", "image": "img/bomb.png"}', "b9", "image_too_large"),
        ('{"item_id": "c1", "title": "连衣裙", "image": "../secret.jpg"}', "c1", "path_outside_root"),
        ('{"item_id": "c2", "title": "连衣裙", "image": "img/escape.jpg"}', "c2", "path_outside_root"),
        ('{"item_id": "a1", "title": "重复", "image": "img/ok.jpg"}', "a1#2", "duplicate_id"),
        ("{not json", "line 20", "bad_manifest_line"),
    ]
    manifest = root / "items.jsonl"
    manifest.write_text("\n".join(r[0] for r in rows) + "\n", "utf-8")
    return manifest, {key: verdict for _, key, verdict in rows}


def run(manifest: Path, store: Path, **kwargs):
    return prepare_store(manifest, store, fake_extract, DIM, "taobao33", CLASSES, workers=kwargs.pop("workers", 0),
                         **kwargs)


def test_every_bad_input_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    manifest, expected = write_catalog(tmp_path / "cat")
    report = run(manifest, tmp_path / "store", workers=2)
    assert report.inputs == len(expected) == report.ok + report.quarantined
    assert report.ok == sum(v == "ok" for v in expected.values())
    lines = [json.loads(line) for line in (tmp_path / "store" / "quarantine.jsonl").read_text("utf-8").splitlines()]
    got = {}
    for q in lines:
        key = f"line {q['line']}" if q["item_id"] is None else q["item_id"]
        got[key + ("#2" if key in got or (q["reason"] == "duplicate_id") else "")] = q["reason"]
        assert set(q) == {"line", "item_id", "reason", "detail"}
    assert got == {k: v for k, v in expected.items() if v != "ok"}
    with FeatureStore(tmp_path / "store") as store:
        assert sorted(it.item_id for it in store) == sorted(k for k, v in expected.items() if v == "ok")
        assert store.get("a2").title == "韩版显瘦半身裙"
        assert store.get("a5").width == 10 and store.get("a6").width == 1
        assert store.split("train").size == 2 and store.split("val").size == 1 and store.split("test").size == 1
    saved = json.loads((tmp_path / "store" / "report.json").read_text())
    assert saved["inputs"] == report.inputs and saved["reasons"]["image_unreadable"] == 3


def test_rerun_of_a_finished_store_is_a_no_op(tmp_path: Path) -> None:
    manifest, _ = write_catalog(tmp_path / "cat")
    first = run(manifest, tmp_path / "store")
    with FeatureStore(tmp_path / "store") as store:
        before = store.content_sha256()
    again = run(manifest, tmp_path / "store")
    assert again.written == 0 and (again.ok, again.quarantined) == (first.ok, first.quarantined)
    with FeatureStore(tmp_path / "store") as store:
        assert store.content_sha256() == before


def test_shards_are_disjoint_and_cover_everything(tmp_path: Path) -> None:
    manifest, expected = write_catalog(tmp_path / "cat")
    reports = [run(manifest, tmp_path / f"shard{i}", shard=(i, 3)) for i in range(3)]
    assert sum(r.inputs for r in reports) == len(expected)
    ids = []
    for i in range(3):
        with FeatureStore(tmp_path / f"shard{i}") as store:
            shard_ids = [it.item_id for it in store]
        assert all(in_shard(x, i, 3) for x in shard_ids)
        ids += shard_ids
    assert sorted(ids) == sorted(k for k, v in expected.items() if v == "ok")


CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from test_prepare import fake_extract, run
from pathlib import Path

def slow(image):
    time.sleep(0.01)
    return fake_extract(image)

import test_prepare
test_prepare.fake_extract = slow
from taomm.datasets.prepare import prepare_store
prepare_store(Path(sys.argv[1]), Path(sys.argv[2]), slow, test_prepare.DIM, "taobao33", test_prepare.CLASSES,
              workers=0, batch_size=5, on_progress=lambda n: print("p", flush=True))
print("done", flush=True)
"""


def big_manifest(root: Path, n: int = 120) -> Path:
    img = root / "img"
    img.mkdir(parents=True)
    rows = []
    for i in range(n):
        Image.new("RGB", (20 + i % 7, 18), (i * 2 % 255, 50, 100)).save(img / f"{i}.png")
        rows.append(json.dumps({"item_id": f"i{i:04d}", "title": f"红色连衣裙{i}号", "image": f"img/{i}.png",
                                "split": "train" if i % 3 else "test"}, ensure_ascii=False))
    (root / "items.jsonl").write_text("\n".join(rows) + "\n", "utf-8")
    return root / "items.jsonl"


def test_sigkill_then_rerun_gives_the_same_store(tmp_path: Path) -> None:
    manifest = big_manifest(tmp_path / "cat")
    child = tmp_path / "child.py"
    child.write_text(CHILD.format(tests=str(Path(__file__).parent)), "utf-8")
    run(manifest, tmp_path / "reference")
    with FeatureStore(tmp_path / "reference") as store:
        want = store.content_sha256()
    rng = np.random.default_rng(7)
    for kill_after in sorted(rng.integers(5, 110, 3)):
        proc = subprocess.Popen([sys.executable, str(child), str(manifest), str(tmp_path / "store")],
                                stdout=subprocess.PIPE, bufsize=0)
        seen = 0
        while line := proc.stdout.readline():
            seen += line.startswith(b"p")
            if seen >= kill_after:
                time.sleep(float(rng.uniform(0, 0.02)))
                proc.send_signal(signal.SIGKILL)
                break
        proc.stdout.close()
        proc.wait(timeout=60)
    final = run(manifest, tmp_path / "store")
    assert final.ok == 120 and final.quarantined == 0
    with FeatureStore(tmp_path / "store") as store:
        assert store.content_sha256() == want


FOREIGN = Path(__file__).parent / "fixtures" / "foreign"


def test_import_kdd2020_features(tmp_path: Path) -> None:
    from taomm.datasets.prepare import import_regions
    from taomm.detectors.extract import feature_rows

    report = import_regions(feature_rows(FOREIGN / "kdd2020.tsv", 2048), tmp_path / "store", 2048, "taobao33",
                            CLASSES)
    assert report.inputs == 4 and report.ok + report.quarantined == 4
    assert report.reasons == {"no_regions": 1}  # product 100002 has no box
    with FeatureStore(tmp_path / "store") as store:
        item = store.get("100001:12")
        assert item.title == "红色波点连衣裙" and (item.width, item.height) == (800, 600)
        assert item.features.shape == (2, 2048) and item.features.dtype == np.float16
        assert store.get("100004:4096").num_regions == 3


def test_import_bottom_up_features_with_captions(tmp_path: Path) -> None:
    from taomm.datasets.prepare import import_regions
    from taomm.detectors.extract import feature_rows

    captions = tmp_path / "captions.jsonl"
    captions.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"item_id": "391895", "title": "一个男人骑着自行车", "split": "train"},
        {"item_id": "184613", "title": "Two dogs play", "split": "test"},
    ]) + "\n", "utf-8")
    report = import_regions(feature_rows(FOREIGN / "bottom_up.tsv", 2048), tmp_path / "store", 2048, "taobao33",
                            CLASSES, captions=captions, max_regions=1)
    assert report.reasons == {"missing_title": 2, "no_chinese": 1}  # 522418 and 318219 have no caption
    with FeatureStore(tmp_path / "store") as store:
        item = store.get("391895")
        assert item.num_regions == 1 and (item.labels == -1).all()  # 6-field rows carry no classes
        assert store.split("train").tolist() == [0]


def test_cli_imports_features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from taomm.cli.app import app

    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["prepare", "--features", str(FOREIGN / "kdd2020.tsv"), "--out", "store", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] == 3
    result = CliRunner().invoke(app, ["prepare", "--features", str(FOREIGN / "kdd2020.tsv")])
    assert result.exit_code == 1 and "--out" in result.stderr


def test_cli_refuses_a_second_writer_of_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import hold_lock
    from test_cli import assert_one_line_error
    from typer.testing import CliRunner

    from taomm.cli.app import app
    from taomm.datasets.sharded import shard_folder

    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    args = ["prepare", "--features", str(FOREIGN / "kdd2020.tsv"), "--json"]
    for locked, out, shard in ((tmp_path / "store", "store", "0/1"),
                               (shard_folder(tmp_path / "sharded", 0, 2), "sharded", "0/2")):
        proc = hold_lock(locked)
        try:
            result = CliRunner().invoke(app, [*args, "--out", out, "--shard", shard])
            assert_one_line_error(result, 1, f"store {locked} is being written by another process (pid {proc.pid})",
                                  "wait for it to finish")
            assert not (locked / "data.mdb").exists() and not (locked / "report.json").exists()
            if shard == "0/2":  # another shard of the same store is another store: not blocked
                other = CliRunner().invoke(app, [*args, "--out", out, "--shard", "1/2"])
                assert other.exit_code == 0, other.output
        finally:
            proc.kill()
            proc.wait(timeout=30)
        result = CliRunner().invoke(app, [*args, "--out", out, "--shard", shard])
        assert result.exit_code == 0, result.output


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_real_photos_through_prepare_with_the_detector(tmp_path: Path) -> None:
    import shutil

    from taomm.detectors.detector import DetectorConfig, ProductDetector
    from taomm.detectors.extract import detector_extractor

    flickr, muge = SHARED / "flickr30k-cn-sample", SHARED / "muge-sample"
    if not (flickr / "captions.tsv").is_file() or not muge.is_dir():
        pytest.skip("shared reference data is absent")
    (tmp_path / "images").mkdir()
    rows = []
    for line in (flickr / "captions.tsv").read_text("utf-8").splitlines()[1:13]:
        image, caption = line.split("\t")
        shutil.copy(flickr / image, tmp_path / "images" / Path(image).name)
        rows.append({"item_id": Path(image).stem, "title": caption, "image": f"images/{Path(image).name}"})
    for png in sorted(muge.glob("*.png")):
        shutil.copy(png, tmp_path / "images" / png.name)
        rows.append({"item_id": png.stem, "title": "圣诞抱枕" if "valid_1" in png.stem else "不粘锅", "image": f"images/{png.name}"})
    unique = {r["item_id"]: r for r in rows}
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in unique.values()) + "\n",
                                          "utf-8")
    torch.manual_seed(0)
    detector = ProductDetector(DetectorConfig(classes=CLASSES))
    report = prepare_store(tmp_path / "items.jsonl", tmp_path / "store", detector_extractor(detector), 2048,
                           "taobao33", CLASSES, workers=2)
    assert report.quarantined == 0 and report.ok == len(unique)
    with FeatureStore(tmp_path / "store") as store:
        for item in store:
            assert 1 <= item.num_regions <= 16 and item.features.shape == (item.num_regions, 2048)
            assert (item.boxes[:, 2] <= item.width).all() and (item.boxes[:, 3] <= item.height).all()
            assert item.width > 100 and item.height > 100  # real photos kept their size


def test_a_folder_of_shards_reads_as_one_store(tmp_path: Path) -> None:
    from taomm.datasets.sharded import ShardedStore, open_store, shard_folder
    from taomm.errors import StoreError

    manifest, expected = write_catalog(tmp_path / "cat")
    for i in range(3):
        run(manifest, shard_folder(tmp_path / "store", i, 3), shard=(i, 3))
    with open_store(tmp_path / "store") as store:
        assert isinstance(store, ShardedStore) and len(store) == sum(v == "ok" for v in expected.values())
        ids = [it.item_id for it in store]
        assert sorted(ids) == sorted(k for k, v in expected.items() if v == "ok")
        assert [store[store.ordinal(i)].item_id for i in ids] == ids
        assert sorted(store[int(o)].item_id for o in store.split("train")) == ["a1", "a4"]
        assert store.summary()["shards"] == 3
    # the same item in two shards is refused
    import shutil
    shutil.copytree(shard_folder(tmp_path / "store", 0, 3), tmp_path / "dup" / "shard-0-of-2")
    shutil.copytree(shard_folder(tmp_path / "store", 0, 3), tmp_path / "dup" / "shard-1-of-2")
    with pytest.raises(StoreError, match="more than one shard"):
        ShardedStore(tmp_path / "dup")
