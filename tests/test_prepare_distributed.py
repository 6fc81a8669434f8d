"""`torchrun -m taomm prepare`: each rank prepares its shard, rank 0 writes the joint report,
a failed rank fails the run, and the store equals a single process's (OMP_NUM_THREADS=1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import child_env, run_taomm
from PIL import Image

from taomm.datasets.prepare import handled_ids
from taomm.datasets.sharded import ShardedStore, check_shares, id_share, joint_report, shard_folder
from taomm.datasets.store import FeatureStore
from taomm.taxonomy import load_taxonomy
from taomm.train.distributed import DistInfo, all_gather_json

CLASSES = list(load_taxonomy("taobao33").classes)
COLOURS = ["红色", "蓝色", "白色", "黑色", "绿色"]
GOODS = ["连衣裙", "半身裙", "衬衫", "帆布鞋", "双肩包"]


def write_items(root: Path, count: int = 20) -> tuple[Path, list[str]]:
    """``count`` good items, one with a missing image, one spam title and one line without an
    id; returns the manifest and the item ids it names."""
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(count):
        pixels = rng.integers(0, 256, size=(24 + i % 5 * 8, 32 + i % 3 * 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "img" / f"{i}.png")
        rows.append({"item_id": f"p{i:03d}", "title": COLOURS[i % 5] + GOODS[i // 5 % 5],
                     "image": f"img/{i}.png", "split": "train" if i % 4 else "test"})
    rows.append({"item_id": "gone", "title": "连衣裙", "image": "img/none.png"})
    rows.append({"item_id": "spam", "title": "连衣裙加微信13812345678", "image": "img/0.png"})
    lines = [json.dumps(r, ensure_ascii=False) for r in rows] + ["{not json"]
    (root / "items.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    return root / "items.jsonl", [r["item_id"] for r in rows]


def tiny_detector(path: Path) -> Path:
    from taomm.detectors.detector import DetectorConfig, ProductDetector

    torch.manual_seed(0)
    config = DetectorConfig(classes=CLASSES, representation_size=16, fpn_channels=32, min_size=64, max_size=96)
    return ProductDetector(config).save(path)


def items_by_id(store) -> dict[str, tuple]:
    return {it.item_id: (it.title, it.word_ends.tolist(), it.width, it.height, it.boxes.tobytes(),
                         it.features.tobytes(), it.labels.tobytes(), it.scores.tobytes()) for it in store}


def splits_by_id(store) -> dict[str, list[str]]:
    return {name: sorted(store[int(o)].item_id for o in store.split(name)) for name in store.split_names()}


def test_all_gather_json_in_one_process_is_the_object_through_json() -> None:
    assert all_gather_json({"a": (1, "波点")}, DistInfo()) == [{"a": [1, "波点"]}]


GATHER = """
import json
from taomm.train.distributed import all_gather_json, setup, teardown
info = setup("cpu")
got = all_gather_json({"rank": info.rank, "text": "波点" * (1 + 40 * info.rank)}, info)
if info.is_main:
    print(json.dumps(got, ensure_ascii=False))
teardown()
"""


def test_all_gather_json_across_two_gloo_processes(tmp_path: Path) -> None:
    (tmp_path / "gather.py").write_text(GATHER, "utf-8")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(tmp_path / "gather.py")], env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout) == [{"rank": 0, "text": "波点"}, {"rank": 1, "text": "波点" * 41}]


def share(rank: int, shard: str, ids: list[str]) -> dict:
    return {"rank": rank, "shard": shard, "inputs": len(ids), "ok": len(ids), "quarantined": 0, "written": len(ids),
            "reasons": {}, "seconds": {}, "ids": id_share(ids)}


def test_check_shares_refuses_ranks_that_each_did_everything() -> None:
    from taomm.datasets.prepare import in_shard

    ids = [f"p{i}" for i in range(30)]
    parts = [[i for i in ids if in_shard(i, r, 2)] for r in range(2)]
    assert check_shares(joint_report([share(r, f"{r}/2", parts[r]) for r in range(2)]), ids) == []
    everything = check_shares(joint_report([share(r, f"{r}/2", ids) for r in range(2)]), ids)
    assert "the ranks handled 60 ids in all; the manifest has 30" in everything
    assert "rank 0: its ids are not those of shard 0/2" in everything
    swapped = check_shares(joint_report([share(r, f"{r}/2", parts[1 - r]) for r in range(2)]), ids)
    assert swapped == ["rank 0: its ids are not those of shard 0/2", "rank 1: its ids are not those of shard 1/2"]
    assert check_shares(joint_report([share(r, "0/2", parts[r]) for r in range(2)]), ids)  # shard 1/2 missing


def test_torchrun_prepare_fails_on_a_failed_rank_then_matches_one_process(tmp_path: Path) -> None:
    manifest, ids = write_items(tmp_path / "cat")
    args = [str(manifest), "--detector", str(tiny_detector(tmp_path / "det")), "--workers", "0", "--fp32",
            "--device", "cpu", "--json"]
    store = tmp_path / "two"
    store.mkdir()
    shard_folder(store, 1, 2).write_text("in rank 1's way")  # rank 1 cannot make its shard folder

    failed = run_taomm("prepare", *args, "--out", str(store), nproc=2)
    assert failed.returncode != 0
    assert f"taomm: error: rank 1 failed: File exists: {shard_folder(store, 1, 2)}\n" in failed.stderr, \
        failed.stderr[-3000:]
    assert "rank 0 failed" not in failed.stderr and not (store / "report.json").exists()

    shard_folder(store, 1, 2).unlink()  # the rerun resumes rank 0's finished shard
    ran = run_taomm("prepare", *args, "--out", str(store), nproc=2)
    assert ran.returncode == 0, ran.stderr[-3000:]
    report = json.loads((store / "report.json").read_text("utf-8"))
    assert check_shares(report, ids) == []
    assert [r["written"] for r in report["ranks"]][0] == 0 and report["written"] == report["ranks"][1]["written"]
    for r in report["ranks"]:  # the record is what the shard holds
        assert r["ids"] == id_share(handled_ids(shard_folder(store, r["rank"], 2)))

    # One process (OMP_NUM_THREADS=1, as torchrun sets) prepares the whole store, then the two
    # shards one after the other.
    one = subprocess.run([sys.executable, "-c", ONE_PROCESS, str(manifest), str(tmp_path / "det"), str(tmp_path)],
                         env=child_env(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    single = json.loads((tmp_path / "one" / "report.json").read_text("utf-8"))
    for name in ("inputs", "ok", "quarantined", "reasons"):
        assert report[name] == single[name], name
    assert single["inputs"] == 23 and single["ok"] == 20
    with FeatureStore(tmp_path / "one") as a, ShardedStore(store) as b, ShardedStore(tmp_path / "shards") as c:
        assert items_by_id(a) == items_by_id(b)  # bitwise: boxes, features, labels, scores
        assert splits_by_id(a) == splits_by_id(b)
        assert b.content_sha256() == c.content_sha256()  # a sharded store hashes its shards: not as `a`
        assert a.items_sha256() == b.items_sha256() == c.items_sha256()  # the shards read as one


ONE_PROCESS = """
import sys
from pathlib import Path
from taomm.datasets.sharded import shard_folder
from taomm.detectors.extract import PrepareSource, prepare
manifest, detector, root = (Path(a) for a in sys.argv[1:])
options = dict(detector=detector, workers=0, device="cpu", bf16=False)
prepare(PrepareSource(manifest), root / "one", **options)
for i in range(2):
    prepare(PrepareSource(manifest), shard_folder(root / "shards", i, 2), shard=(i, 2), **options)
"""


def test_under_torchrun_the_shard_is_not_the_callers(tmp_path: Path) -> None:
    from taomm.detectors.extract import PrepareSource, prepare_ranks
    from taomm.errors import OptionError

    rank1 = DistInfo(rank=1, world_size=2)  # refused before the process group is used
    with pytest.raises(OptionError) as refused:
        prepare_ranks(PrepareSource(tmp_path / "items.jsonl"), tmp_path / "store", rank1, shard=(1, 2))
    assert refused.value.worded({}) == "--shard is torchrun's to choose: each rank prepares shard RANK/WORLD_SIZE"
    assert not (tmp_path / "store").exists()
