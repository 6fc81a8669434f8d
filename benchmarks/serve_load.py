"""`taomm serve` under load, micro-batching off and on, side by side in one run (issue 19).

For each rerank setting (default search, and ITM rerank of 16) and each batching mode, a
fresh `taomm serve` on a workspace's index listens on loopback; after a warm-up, ``--clients``
threads (one keep-alive HTTP connection each) send the catalog's queries
(its queries source, else a built-in list) to /api/search for ``--seconds``. Printed per
run: QPS, p50/p99 latency, errors (anything but 200 and 422: a query the filter rejects is a
correct answer); then the on/off ratios. "off" is `--max-batch 1`: each search alone, at most
``--concurrency`` at a time, as the server worked before batching.

Goals (2 cores, 50 clients, 30 s, default search): QPS >= 3x batching off, p99 <= 250 ms,
0 errors; with rerank 16, QPS >= 2x batching off. The client shares the machine's cores with
the server, as on one host; run it with nothing else busy.

    python benchmarks/serve_load.py --workspace demo [--clients 50 --seconds 30]
        [--reranks 0,16] [--batch-window-ms 5 --max-batch 32 --queue-size 256]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np

from taomm.workspace import load_workspace

QUERIES = ["波点荷叶边裙", "红色连衣裙", "蓝色格子衬衫", "白色帆布鞋", "黑色双肩包", "条纹卫衣", "碎花半身裙",
           "纯色T恤", "粉色百褶裙", "灰色运动鞋"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workspace_queries(workspace: Path) -> list[str]:
    path = load_workspace(workspace).source("queries")
    if path is None or not path.is_file():
        return QUERIES
    return [json.loads(line)["query"] for line in path.read_text("utf-8").splitlines() if line.strip()]


def model_summary(workspace: Path) -> dict:
    """The workspace's preset and the served model's size, to say what was measured."""
    ws = load_workspace(workspace)
    manifest = json.loads((ws.path("index") / "current" / "manifest.json").read_text("utf-8"))
    cfg = manifest["model"]["config"]
    return {"preset": ws.config.model.preset, "items": manifest["count"], "hidden": cfg["hidden_size"],
            "layers": {k: v for k, v in cfg.items() if k.startswith("num_") and k.endswith("_layers")}}


class Server:
    """`taomm serve` in a subprocess on a free loopback port, until ``stop``."""

    def __init__(self, workspace: Path, options: list[str]) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "taomm", "serve", "--port", str(self.port), "-w", str(workspace), *options]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"taomm serve exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                if get(self.connect(), "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("taomm serve did not answer /health in 180 s")

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def load(server: Server, queries: list[str], rerank: int, clients: int, seconds: float) -> dict:
    """``clients`` threads searching for ``seconds``: QPS, p50/p99 and errors."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    suffix = f"&k=10&rerank={rerank}" if rerank else "&k=10"
    stop = [float("inf")]

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        conn = server.connect()
        start.wait()
        mine: list[float] = []
        while time.perf_counter() < stop[0]:
            path = "/api/search?q=" + urllib.parse.quote(queries[int(rng.integers(len(queries)))]) + suffix
            t0 = time.perf_counter()
            try:
                status: int | str = get(conn, path)[0]
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out: an error too
                status = type(exc).__name__
                conn.close()
                conn = server.connect()
            if status in (200, 422):
                mine.append(time.perf_counter() - t0)
            else:
                with lock:
                    errors[str(status)] = errors.get(str(status), 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    ms = np.asarray(latencies or [0.0]) * 1e3
    return {"requests": len(latencies), "seconds": round(elapsed, 1), "qps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, required=True, help="A workspace with an exported index")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=3, help="Seconds of load before each measured run")
    parser.add_argument("--reranks", default="0,16", help="Rerank settings to run, comma-separated")
    parser.add_argument("--modes", default="off,on", help="Batching modes to run: off, on")
    parser.add_argument("--batch-window-ms", type=float, default=None, help="Passed to taomm serve (on)")
    parser.add_argument("--max-batch", type=int, default=None, help="Passed to taomm serve (on)")
    parser.add_argument("--queue-size", type=int, default=None, help="Passed to taomm serve (on)")
    parser.add_argument("--batch-workers", type=int, default=None, help="Passed to taomm serve (on)")
    parser.add_argument("--serve-option", action="append", default=[],
                        help="Another `taomm serve` option for every run, e.g. --serve-option=--encoder=torch")
    args = parser.parse_args()
    on = [f"--{name.replace('_', '-')}={value}" for name, value in
          (("batch_window_ms", args.batch_window_ms), ("max_batch", args.max_batch), ("queue_size", args.queue_size),
           ("batch_workers", args.batch_workers))
          if value is not None]
    options = {"off": ["--max-batch=1"], "on": on}
    queries = workspace_queries(args.workspace)
    report = {"cpus": os.cpu_count(), "model": model_summary(args.workspace), "clients": args.clients,
              "seconds": args.seconds, "serve_options": args.serve_option, "on_options": on, "runs": []}
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}), flush=True)
    for rerank in (int(r) for r in args.reranks.split(",")):
        for mode in args.modes.split(","):
            server = Server(args.workspace, [*options[mode], *args.serve_option])
            try:
                load(server, queries, rerank, args.clients, args.warmup)
                result = {"rerank": rerank, "batching": mode, **load(server, queries, rerank, args.clients,
                                                                      args.seconds)}
                if server.process.poll() is not None:  # it died under load: say how
                    result["server_exit"] = server.process.returncode
                    result["server_stderr"] = server.process.stderr.read().decode(errors="replace")[-2000:]
            finally:
                server.stop()
            report["runs"].append(result)
            print(json.dumps(result), flush=True)
    print(f"\n{'rerank':>6} {'batching':>8} {'QPS':>8} {'p50 ms':>8} {'p99 ms':>8}  errors")
    for r in report["runs"]:
        print(f"{r['rerank']:>6} {r['batching']:>8} {r['qps']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8}  {r['errors'] or 0}")
    for rerank in sorted({r["rerank"] for r in report["runs"]}):
        pair = {r["batching"]: r for r in report["runs"] if r["rerank"] == rerank}
        if {"off", "on"} <= set(pair) and pair["off"]["qps"]:
            print(f"rerank {rerank}: batching on/off QPS x{pair['on']['qps'] / pair['off']['qps']:.2f}, "
                  f"p99 x{pair['on']['p99_ms'] / max(pair['off']['p99_ms'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
