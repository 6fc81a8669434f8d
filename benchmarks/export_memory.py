"""Peak memory of `taomm export-embeddings` on a large synthetic store: items stream through
in batches (issue 18: 1M items within 4 GB RSS).

A store of ``--items`` synthetic items (one region each of ``--feature-dim`` fp16 features,
titles drawn from a small word list, unique ids) is written once into ``--workdir`` with a
WordPiece vocab and a random tiny retrieval model (the model's size does not change what the
export holds in memory: the batch, the vectors on disk, one faiss index at a time). Then
``python -m taomm export-embeddings`` runs as a child process and this script samples its
``/proc/PID/status`` every 0.2 s:

- ``VmHWM``: the kernel's peak resident set (everything mapped and resident);
- ``RssAnon`` peak: the process's own memory (heap, tensors, faiss);
- ``RssFile`` peak: resident pages of mapped files. The LMDB store is read through a memory
  map, so the store's pages count here while they are in the page cache: memory the kernel
  reclaims under pressure, not memory the export holds.

The export is run at each of ``--sizes``; at the first size the baseline runs too, in a
child process of its own: the export as it was before it streamed, every batch's vectors
(float32, as the model returns them), ids and metadata collected in memory and written at
the end (``write_index``; the old code also built each faiss index from a float32 copy in
memory, which this baseline does not, so its figure is a lower bound of the old one). The
ratio of the peaks is printed.

    python benchmarks/export_memory.py [--sizes 100000 1000000] [--feature-dim 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

WORDS = ["红色", "蓝色", "白色", "黑色", "波点", "条纹", "格子", "碎花", "纯色", "荷叶边", "百褶", "女装", "男款",
         "新款", "包邮", "夏季", "半身裙", "连衣裙", "衬衫", "卫衣", "帆布鞋", "双肩包", "雪纺", "纯棉"]


def build(root: Path, items: int, feature_dim: int) -> tuple[Path, Path]:
    """The store and the model (reused when already built)."""
    import torch

    from taomm.datasets.store import Item, StoreWriter, word_ends_of
    from taomm.model import InterBertConfig, InterBertForRetrieval
    from taomm.taxonomy import load_taxonomy
    from taomm.text.tokenizer import TitleTokenizer, train_vocab

    store, model = root / f"store-{items}", root / f"model-{feature_dim}-256"
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((64, 1, feature_dim)).astype(np.float16)
    if not (store / "done").exists():
        taxonomy = load_taxonomy("taobao33")
        t0 = time.perf_counter()
        with StoreWriter(store, language="zh", feature_dim=feature_dim, taxonomy=taxonomy.name,
                         classes=taxonomy.classes, batch_size=4096, map_size=1 << 34) as writer:
            for i in range(items):
                words = [WORDS[j] for j in rng.choice(len(WORDS), 5, replace=False)]
                writer.add(Item(item_id=f"item{i:08d}", title="".join(words), word_ends=word_ends_of(words),
                                width=200, height=300, boxes=np.array([[10.0, 20.0, 150.0, 280.0]]),
                                features=pool[i % len(pool)], labels=np.array([i % 33]), scores=np.array([0.9])))
        (store / "done").write_text("")
        print(f"store of {items:,} items written in {time.perf_counter() - t0:.0f} s", flush=True)
    if not (model / "model.safetensors").exists():
        vocab = train_vocab(["".join(WORDS), *WORDS], root / "vocab.txt", vocab_size=120, min_frequency=1)
        torch.manual_seed(0)
        config = InterBertConfig.from_preset("tiny", vocab_size=len(TitleTokenizer(vocab)),  # vectors of the
                                             region_feature_dim=feature_dim, item_embedding_size=256,  # real size
                                             retrieval_embedding_size=256)
        InterBertForRetrieval(config).save_pretrained(model, vocab_file=vocab)
    return store, model


def peaks(pid: int, found: dict[str, int], done: threading.Event) -> None:
    while not done.is_set():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "RssAnon", "RssFile"):
                found[key] = max(found.get(key, 0), int(value.split()[0]))
        time.sleep(0.2)


def in_memory_export(store: Path, model_dir: Path, out: Path, batch_size: int) -> None:
    """The baseline (module docstring), in this process."""
    from taomm.datasets.sharded import open_store
    from taomm.index import ExportJob, IndexParams, write_index
    from taomm.model import InterBertForRetrieval
    from taomm.text.tokenizer import TitleTokenizer

    model = InterBertForRetrieval.from_pretrained(model_dir)
    with open_store(store) as fs:
        job = ExportJob(model, fs, TitleTokenizer(model_dir / "vocab.txt"), {}, batch_size, bf16=False)
        ids, items, vectors = [], [], {"image": [], "item": []}
        for batch in job.batches(range(len(fs))):
            ids += batch.item_ids
            items += batch.items
            for kind, array in batch.vectors.items():
                vectors[kind].append(array.astype(np.float32))
    arrays = {kind: np.concatenate(parts) for kind, parts in vectors.items()}
    write_index(out, ids, items, arrays, IndexParams(), {})
    print(json.dumps({"items": len(ids), "index_params": {"item": IndexParams().resolved(len(ids), 256)}}))


def export(store: Path, model: Path, out: Path, batch_size: int, baseline: bool = False) -> dict:
    command = [sys.executable, "-m", "taomm", "export-embeddings", "--model", str(model), "--store", str(store),
               "--out", str(out), "--batch-size", str(batch_size), "--fp32", "--json"]  # fp32: faster on most CPUs
    if baseline:
        command = [sys.executable, __file__, "--in-memory-child", str(store), str(model), str(out), str(batch_size)]
    t0 = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    found: dict[str, int] = {}
    done = threading.Event()
    watcher = threading.Thread(target=peaks, args=(child.pid, found, done))
    watcher.start()
    stdout, _ = child.communicate()
    done.set()
    watcher.join()
    if child.returncode:
        raise SystemExit(f"export failed ({child.returncode})")
    summary = json.loads(stdout)
    return {"items": summary["items"], "index": summary["index_params"]["item"]["type"],
            "seconds": round(time.perf_counter() - t0, 1), **{k: round(v / 1024**2, 2) for k, v in found.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "taomm-export-memory")
    parser.add_argument("--in-memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_memory_child:
        store, model, out, batch_size = args.in_memory_child
        in_memory_export(Path(store), Path(model), Path(out), int(batch_size))
        return
    print(f"{'export':>10} {'items':>10} {'index':>6} {'seconds':>8} {'VmHWM GB':>9} {'RssAnon GB':>11} "
          f"{'RssFile GB':>11}")
    streamed: dict = {}
    for n, items in enumerate(args.sizes):
        store, model = build(args.workdir, items, args.feature_dim)
        for baseline in (False, True) if n == 0 else (False,):
            r = export(store, model, args.workdir / f"index-{items}-{'memory' if baseline else 'streamed'}",
                       args.batch_size, baseline)
            print(f"{'in memory' if baseline else 'streamed':>10} {r['items']:>10,} {r['index']:>6} {r['seconds']:>8} "
                  f"{r.get('VmHWM', 0):>9} {r.get('RssAnon', 0):>11} {r.get('RssFile', 0):>11}", flush=True)
            if baseline:
                print(f"{'':>10} peak RSS in memory / streamed: {r['VmHWM'] / streamed['VmHWM']:.2f}x "
                      f"(own memory {r['RssAnon'] / streamed['RssAnon']:.2f}x)", flush=True)
            else:
                streamed = r


if __name__ == "__main__":
    main()
