"""Feature-store read speed: random item reads from LMDB vs streaming a tar of the same records.

Contract (DESIGN.md section 9): >= 100k random items/s warm, and >= 2.5x Python
``tarfile`` streaming. Both sides decode every record into an ``Item`` (numpy views),
both files are warm in the page cache, and both run in this one process.

    python benchmarks/store_read.py [--items 10000] [--boxes 16] [--dim 2048]
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from taomm.datasets.store import (
    FeatureStore,
    Item,
    StoreWriter,
    decode_item,
    encode_item,
    validate_item,
    word_ends_of,
)
from taomm.taxonomy import load_taxonomy


def make_items(count: int, boxes: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    words = ["2020夏季新款", "波点", "荷叶边", "半身裙", "女"]
    # One block of random features reused with a per-item offset: generation stays cheap.
    block = rng.standard_normal((boxes * 8, dim)).astype(np.float16)
    for i in range(count):
        start = int(rng.integers(0, boxes * 7))
        xy = np.sort(rng.uniform(0, 190, (boxes, 2, 2)), axis=2)
        box = np.stack([xy[:, 0, 0], xy[:, 1, 0], xy[:, 0, 1] + 1, xy[:, 1, 1] + 1], axis=1)
        yield Item(f"{1000000 + i}", "".join(words), word_ends_of(words), 192, 192, box,
                   block[start:start + boxes], rng.integers(0, 33, boxes), rng.uniform(0.1, 1, boxes))


def build(root: Path, count: int, boxes: int, dim: int) -> tuple[Path, Path]:
    taxonomy = load_taxonomy("taobao33")
    store, tar_path = root / "store", root / "records.tar"
    with StoreWriter(store, language="zh", feature_dim=dim, taxonomy=taxonomy.name, classes=taxonomy.classes,
                     batch_size=1024) as writer, tarfile.open(tar_path, "w") as tar:
        for i, item in enumerate(make_items(count, boxes, dim)):
            writer.add(item)
            record = encode_item(validate_item(item, dim, len(taxonomy)))
            info = tarfile.TarInfo(f"{i:09d}.rec")
            info.size = len(record)
            tar.addfile(info, io.BytesIO(record))
    return store, tar_path


def read_tar(tar_path: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    with tarfile.open(tar_path, "r|") as tar:
        for member in tar:
            item = decode_item(tar.extractfile(member).read())
            n += item.num_regions > -1
    return n, time.perf_counter() - t0


def read_store(store: FeatureStore, order: np.ndarray) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    for i in order.tolist():
        item = store[i]
        n += item.num_regions > -1
    return n, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--boxes", type=int, default=16)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store_path, tar_path = build(Path(tmp), args.items, args.boxes, args.dim)
        build_s = time.perf_counter() - t0
        order = np.random.default_rng(0).permutation(args.items)
        with FeatureStore(store_path) as store:
            read_store(store, order)  # warm-up: page the store in
            read_tar(tar_path)
            store_rates, tar_rates = [], []
            for _ in range(args.repeats):
                n, s = read_store(store, order)
                store_rates.append(n / s)
                n, s = read_tar(tar_path)
                tar_rates.append(n / s)
        result = {
            "items": args.items, "record_bytes": int(tar_path.stat().st_size / args.items),
            "build_s": round(build_s, 2),
            "lmdb_random_items_per_s": round(max(store_rates)),
            "tar_stream_items_per_s": round(max(tar_rates)),
            "ratio": round(max(store_rates) / max(tar_rates), 2),
        }
    print(f"store: {result['lmdb_random_items_per_s']:,} random items/s (LMDB, zero-copy)")
    print(f"tar:   {result['tar_stream_items_per_s']:,} items/s (tarfile streaming, sequential)")
    print(f"ratio: {result['ratio']}x  (goal: >= 100,000 items/s and >= 2.5x)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
