"""Search latency and recall, and a load run against `taomm serve`, in one run.

1. Index part, synthetic: clustered unit vectors of the model's dimension (like real
   embeddings), 100k and 1M items; for each approximate index (HNSW, IVF-PQ + exact
   refine) the build time, p50/p99 per query of query encoding (the real text encoder on
   real query text) + vector search, and recall@10 against exact search (faiss flat, timed
   the same way as the baseline).
2. End to end on a workspace's real index (`--workspace`, after `taomm export-embeddings`):
   `SearchEngine.search` p50/p99 with and without ITM rerank.
3. Load: `taomm serve` on loopback, 50 concurrent clients for 30 s sending the catalog's
   held-out queries: QPS, p50/p99, errors.

Goals: p50 <= 15 ms without rerank on 1M items at recall@10 >= 0.95 on 2 cores; 0 errors.

    python benchmarks/search_latency.py --workspace demo [--sizes 100000,1000000] [--clients 50 --seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import torch

from taomm.index import IndexParams, build_faiss, configure_search

QUERIES = ["波点荷叶边裙", "红色连衣裙", "蓝色格子衬衫", "白色帆布鞋", "黑色双肩包", "条纹卫衣", "碎花半身裙",
           "纯色T恤", "粉色百褶裙", "灰色运动鞋"]


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(16, n // 200), dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def percentiles(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def query_encoder(model_dir: Path | None, dim: int):
    """A function text -> (1, dim) unit vector: the real text encoder (a given retrieval
    model, else a random `mini` one with the demo vocabulary's characters)."""
    from taomm.model import InterBertConfig, InterBertForRetrieval
    from taomm.text.clean import TitleCleaner
    from taomm.text.tokenizer import TitleTokenizer

    if model_dir is not None:
        model = InterBertForRetrieval.from_pretrained(model_dir).eval()
        tok = TitleTokenizer(model_dir / "vocab.txt")
    else:
        import tempfile

        vocab = Path(tempfile.mkdtemp()) / "vocab.txt"
        chars = sorted(set("".join(QUERIES)))
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n", "utf-8")
        tok = TitleTokenizer(vocab)
        model = InterBertForRetrieval(InterBertConfig.from_preset("mini", vocab_size=len(tok),
                                                                  retrieval_embedding_size=dim)).eval()
    cleaner = TitleCleaner()

    @torch.no_grad()
    def encode(text: str) -> np.ndarray:
        words = cleaner(text).words
        ids = tok.encode_words(words).ids
        x = torch.tensor([[tok.cls_id, *ids, tok.sep_id]])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model.encode_text(x, torch.ones_like(x, dtype=torch.bool)).float().numpy()
    return encode, model.config.retrieval_embedding_size


def bench_index(sizes: list[int], encode, dim: int, queries: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng(1)
    for n in sizes:
        x = clustered(n, dim)
        q = x[rng.integers(0, n, queries)] + 0.2 * rng.standard_normal((queries, dim), dtype=np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        flat = build_faiss(x, IndexParams(kind="flat").resolved(n, dim))
        exact = flat.search(q, 10)[1]
        kinds = ["flat", "ivfpq", "hnsw"] if n <= 200_000 or os.environ.get("TAOMM_BENCH_HNSW_1M") else ["flat", "ivfpq"]
        for kind in kinds:
            params = IndexParams(kind=kind).resolved(n, dim)
            t0 = time.perf_counter()
            index = flat if kind == "flat" else configure_search(build_faiss(x, params), params)
            build = time.perf_counter() - t0
            times, search_times, found = [], [], []
            for i in range(queries):
                t0 = time.perf_counter()
                vector = encode(QUERIES[i % len(QUERIES)])  # the real encoder's cost
                t1 = time.perf_counter()
                _, rows_found = index.search(q[i:i + 1], 10)  # the synthetic query vector
                t2 = time.perf_counter()
                del vector
                times.append(t2 - t0)
                search_times.append(t2 - t1)
                found.append(rows_found[0])
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)]))
            rows.append({"items": n, "index": kind, "params": params, "build_s": round(build, 1),
                         "encode_plus_search": percentiles(times), "search_only": percentiles(search_times),
                         "recall@10": round(recall, 4)})
            print(json.dumps(rows[-1]), flush=True)
        del x, flat
    return rows


def bench_engine(index: Path, queries: int) -> dict:
    from taomm.search import SearchEngine

    engine = SearchEngine(index, device="cpu")
    out = {}
    for name, rerank in (("no rerank", 0), ("rerank 16", 16)):
        engine.search(QUERIES[0], k=10, rerank=rerank)  # warm
        times = []
        for i in range(queries):
            t0 = time.perf_counter()
            engine.search(QUERIES[i % len(QUERIES)], k=10, rerank=rerank)
            times.append(time.perf_counter() - t0)
        out[name] = percentiles(times)
    out["items"] = len(engine.index)
    print(json.dumps({"engine": out}), flush=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_run(workspace: Path, clients: int, seconds: float) -> dict:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "taomm", "serve", "--port", str(port), "-w", str(workspace)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(base + "/health", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        queries = QUERIES
        catalog_queries = workspace / "catalog" / "queries.jsonl"
        if catalog_queries.is_file():
            queries = [json.loads(line)["query"] for line in catalog_queries.read_text("utf-8").splitlines()]
        latencies: list[float] = []
        errors: dict[str, int] = {}
        stop = time.time() + seconds
        lock = threading.Lock()

        def client(seed: int) -> None:
            rng = np.random.default_rng(seed)
            while time.time() < stop:
                q = queries[int(rng.integers(0, len(queries)))]
                t0 = time.perf_counter()
                try:
                    with urllib.request.urlopen(base + "/api/search?k=10&q=" + urllib.parse.quote(q), timeout=60) as r:
                        r.read()
                        status = r.status
                except urllib.error.HTTPError as e:
                    status = e.code
                except Exception as e:  # connection refused/reset: an error too
                    status = type(e).__name__
                dt = time.perf_counter() - t0
                with lock:
                    if status == 200:
                        latencies.append(dt)
                    elif status != 422:  # 422: a query the filter rejects, a correct answer
                        errors[str(status)] = errors.get(str(status), 0) + 1
                    else:
                        latencies.append(dt)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        result = {"clients": clients, "seconds": round(elapsed, 1), "requests": len(latencies),
                  "qps": round(len(latencies) / elapsed, 1), **percentiles(latencies or [0.0]), "errors": errors}
        print(json.dumps({"load": result}), flush=True)
        return result
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, help="A demo workspace with runs/retrieval and an exported index")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    model_dir = None
    if args.workspace is not None and (args.workspace / "runs" / "retrieval" / "model").is_dir():
        model_dir = args.workspace / "runs" / "retrieval" / "model"
    encode, dim = query_encoder(model_dir, 256)
    report = {"cpus": os.cpu_count(), "index": bench_index([int(s) for s in args.sizes.split(",")], encode, dim,
                                                           args.queries)}
    if args.workspace is not None:
        report["engine"] = bench_engine(args.workspace / "index", args.queries)
        report["load"] = load_run(args.workspace, args.clients, args.seconds)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
