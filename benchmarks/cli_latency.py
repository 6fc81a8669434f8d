"""How long `taomm search` and `taomm recommend` take from the shell, warm, on a workspace.

Each command runs as a fresh process (what a user waits for: interpreter start, imports, index
and encoder load, one query), once to warm the disk cache, then ``--repeats`` times; the
median and best wall times are printed for the text encoder in ONNX (the index's
``text_encoder.onnx``, written by `taomm export-embeddings --onnx`) and in torch, side by side
in the same run (recommend reads the stored item vectors and encodes no text). Goal (issue 19): <= 1.5 s warm on the demo workspace.

    python benchmarks/cli_latency.py --workspace taomm-demo [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(command: list[str], cwd: Path, repeats: int) -> list[float]:
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)  # warm the disk cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("taomm-demo"))
    parser.add_argument("--query", default="波点荷叶边裙")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    index = args.workspace / "index" / "current" / "manifest.json"
    if not index.exists():
        print(f"no index in {args.workspace}: run `taomm demo` (or `taomm export-embeddings`) first",
              file=sys.stderr)
        return 2
    has_onnx = "text_encoder.onnx" in json.loads(index.read_text("utf-8"))["files"]
    taomm = [sys.executable, "-m", "taomm"]
    item = json.loads(subprocess.run([*taomm, "search", args.query, "--k", "1", "--json"], cwd=args.workspace,
                                     check=True, capture_output=True, text=True).stdout)[0]["item_id"]
    commands = {"search": ["search", args.query, "--k", "5"], "recommend": ["recommend", item, "--k", "5"]}
    encoders = ("onnx", "torch") if has_onnx else ("torch",)
    if not has_onnx:
        print("the index has no text_encoder.onnx (`taomm export-embeddings --onnx`): torch only")
    print(f"{'command':10s} {'encoder':8s} {'median s':>9s} {'best s':>8s}  (fresh process, warm, "
          f"{args.repeats} runs; goal <= 1.5 s)")
    for name, command in commands.items():
        medians = {}
        for encoder in encoders if name == "search" else ("-",):  # recommend encodes no text
            options = ["--encoder", encoder] if encoder != "-" else []
            times = timed([*taomm, *command, *options], args.workspace, args.repeats)
            medians[encoder] = statistics.median(times)
            print(f"{name:10s} {encoder:8s} {medians[encoder]:9.2f} {min(times):8.2f}")
        if len(medians) == 2:
            print(f"{name:10s} torch / onnx: {medians['torch'] / medians['onnx']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
