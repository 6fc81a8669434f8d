"""Hard-negative mining scaled out over torchrun ranks: 2 ranks against 1, the growth curve,
and a projection for 3.1M captions on 8 and 32 ranks.

Goal (issue 18): 2 ranks >= 1.8x faster than 1 on 2 cores; 3.1M captions <= 30 min on 8 ranks.

Corpus: the captions of ``benchmarks/mining.py`` (real Taobao titles and COCO-CN captions,
varied with a fixed seed), handed to the ranks as a text file of one caption per line, as
``torchrun -m taomm mine-negatives --captions`` reads it: each rank reads the file and
segments its share of the lines (``--words``: the ranks get the words segmented here, as JSON
lines, and time the mining alone). Each configuration runs as its own ``torchrun
--standalone`` group of gloo processes calling :func:`taomm.text.mining_ranks.mine_ranks`
(what the command runs); what each process pays once whatever the captions (loading the
numba kernels from their cache or compiling them, loading jieba's dictionary) is done before
the clock starts. Times are rank 0's: ``total`` (every rank segments and counts the words of
its share of the captions, rank 0 merges the counts and builds and saves the shared TF-IDF
arrays, every rank mines its block of distinct TF-IDF rows, "vectors", for their captions
against them memory-mapped, rank 0 gathers) and ``mine`` (the slowest rank's block), and
each rank's CPU seconds (``cpu``: the wall time it would take on a core of its own, whatever
else runs on the machine). ``vectors``: how many distinct rows the captions have (the
variations repeat some captions word for word, as listings repeat titles).

- Same corpus, in the same run: 2 ranks x 1 thread, 1 rank x 1 thread, 1 rank x 2 threads,
  in turn, ``--repeat`` rounds (default 3); each configuration's fastest run counts.
  ``scale-out`` = 1 rank x 1 thread / 2 ranks x 1 thread (the issue's 1 vs 2 ranks, each rank
  one core, as torchrun's OMP_NUM_THREADS=1); ``same threads`` = 1 rank x 2 threads / 2 ranks
  x 1 thread (two cores either way).
- Machine ceiling, same run: rank 0's block mined by one process alone, then by two copies at
  once (nothing shared or exchanged): ``ceiling`` = 2 x alone / the slower copy, what two
  busy cores give here at that moment (a virtual machine's two cores may not run two
  processes at full speed each, and its speed drifts between runs: a ceiling above 2 means
  the lone process was the slow one).
- Growth: 2 ranks x 1 thread at each ``--sizes``. Fit, least squares in log-log, on CPU
  seconds (so that other load on the machine does not bend the curve): the serial part (rank
  0's CPU seconds outside its block: reading and counting its share, merging, building and
  saving the arrays, gathering) as
  ``a N^b`` and the row work (the ranks' mining CPU seconds summed) as ``c N^d``. Projection
  for R ranks on a core each, blocks balanced: ``a N^b + c N^d / R`` at N = 3.1M.

    python benchmarks/mining_ranks.py [--sizes 100000 200000 400000] [--seed 0] [--repeat 3] [--words]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mining import COCO, DATA, FULL_SCALE, MAX_SIM, TITLES, TOP_K, build_corpus  # noqa: E402


def worker(captions: Path, threads: int) -> None:
    """One rank of a timed run; rank 0 prints its timings as JSON."""
    from taomm.text.mining import JOIN_ARRAYS, join_arrays, mine_rows, vector_blocks
    from taomm.text.mining_ranks import MINING_TIMEOUT, mine_ranks
    from taomm.text.segment import segment
    from taomm.train.distributed import all_gather_json, setup, teardown

    info = setup("cpu", MINING_TIMEOUT)
    segment("预热")  # jieba's dictionary
    with tempfile.TemporaryDirectory() as tmp:  # the kernels (in memory, memory-mapped) loaded or compiled
        small = join_arrays([["a", "b"], ["a", "c"], ["b", "c", "d"]] * 100)
        for name, array in small.items():
            np.save(Path(tmp) / f"{name}.npy", array)
        for arrays in (small, {name: np.load(Path(tmp) / f"{name}.npy", mmap_mode="c") for name in JOIN_ARRAYS}):
            mine_rows(arrays, range(300), TOP_K, MAX_SIM)
            vector_blocks(arrays, 2)
    scratch = captions.with_name(captions.name + ".mining-tmp")
    t0, cpu0 = time.perf_counter(), time.process_time()
    mined = mine_ranks(lambda part, parts: (read_share(captions, part, parts), None), scratch, info, top_k=TOP_K,
                       max_sim=MAX_SIM, threads=threads)
    total = time.perf_counter() - t0
    cpu = all_gather_json(round(time.process_time() - cpu0, 2), info)  # CPU seconds: what other load cannot change
    if info.is_main:
        print(json.dumps({"total_s": round(total, 2), "mine_s": max(s["seconds"] for s in mined.shares),
                          "rank_s": [s["seconds"] for s in mined.shares], "cpu_s": cpu, "ranks": mined.shares,
                          "sha": _digest(mined.indices, mined.sims)}))
    teardown()


def read_share(captions: Path, part: int, parts: int) -> list[list[str]]:
    """The words of the part-th of parts shares of the captions: a file of one caption per line
    segmented as ``taomm mine-negatives --captions`` does it, or of words (``.jsonl``) parsed."""
    from taomm.text.segment import segment
    from taomm.train.distributed import row_share

    lines = captions.read_text("utf-8").split("\n")[:-1]  # each line ends with a newline
    rows = row_share(len(lines), part, parts)
    share = lines[rows.start:rows.stop]
    return [json.loads(line) for line in share] if captions.suffix == ".jsonl" else [segment(line) for line in share]


def _digest(indices: np.ndarray, sims: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(indices.tobytes() + sims.tobytes()).hexdigest()[:16]


def timed(captions: Path, ranks: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(ranks), __file__, "--worker", str(captions), "--threads", str(threads)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {ranks} rank(s) x {threads} thread(s), {result['ranks'][-1]['vectors'][1]:,} vectors: total {result['total_s']:.2f} s, mine {result['mine_s']:.2f} s "
          f"(per rank {result['rank_s']}); CPU s per rank {result['cpu_s']}", flush=True)
    return result


def copy_worker(captions: Path, ready: Path, copies: int) -> None:
    """One copy of the ceiling job: rank 0's block of vectors of 2 mined on one thread, in a
    process of its own with nothing to exchange. The copies start together: each marks itself
    ready in ``ready`` (a folder) and waits for the others. Prints its seconds."""
    from taomm.text.mining import join_arrays, mine_vectors, vector_blocks

    arrays = join_arrays(read_share(captions, 0, 1))
    block = vector_blocks(arrays, 2)[0]
    mine_vectors(arrays, range(1), TOP_K, MAX_SIM, threads=1)  # the kernels loaded
    (ready / str(os.getpid())).touch()
    while len(list(ready.iterdir())) < copies:
        time.sleep(0.01)
    t0 = time.perf_counter()
    mine_vectors(arrays, block, TOP_K, MAX_SIM, threads=1)
    print(json.dumps(round(time.perf_counter() - t0, 3)))


def ceiling(captions: Path) -> dict:
    """What this machine gives two processes at once: rank 0's block mined by one process alone,
    then by two copies at the same time (nothing shared, nothing exchanged); ``ceiling`` = 2 x
    alone / the slower copy: what a perfect split over 2 ranks would get at that moment."""
    seconds = {}
    for copies in (1, 2):
        with tempfile.TemporaryDirectory() as ready:
            procs = [subprocess.Popen([sys.executable, __file__, "--copy-worker", str(captions), "--ready", ready,
                                       "--copies", str(copies)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                                      stdout=subprocess.PIPE, text=True) for _ in range(copies)]
            seconds[copies] = [json.loads(proc.communicate()[0].strip().splitlines()[-1]) for proc in procs]
            if any(proc.returncode for proc in procs):
                sys.exit("the ceiling job failed")
    result = {"alone_s": seconds[1][0], "two_at_once_s": seconds[2],
              "ceiling": round(2 * seconds[1][0] / max(seconds[2]), 2)}
    print(f"  machine ceiling: rank 0's block alone {result['alone_s']:.2f} s, two copies at once {seconds[2]} s: "
          f"{result['ceiling']}x for 2 processes", flush=True)
    return result


def compare(fastest: dict[tuple[int, int], dict], machine: dict) -> dict:
    """The first size's comparison, from each configuration's fastest run ``(ranks, threads)``."""
    two, one, one_two_threads = fastest[2, 1], fastest[1, 1], fastest[1, 2]
    result = dict(one_rank_1_thread_s=one["total_s"], machine=machine, one_rank_2_threads_s=one_two_threads["total_s"],
                  two_ranks_1_thread_s=two["total_s"], scale_out=round(one["total_s"] / two["total_s"], 2),
                  same_threads=round(one_two_threads["total_s"] / two["total_s"], 2),
                  scale_out_mining_only=round(one["mine_s"] / two["mine_s"], 2),
                  scale_out_cpu=round(one["cpu_s"][0] / max(two["cpu_s"]), 2))
    print(f"  scale-out (1 rank x 1 thread / 2 ranks x 1 thread): {result['scale_out']}x (goal >= 1.8x), "
          f"mining alone {result['scale_out_mining_only']}x; same threads (1 rank x 2 threads / 2 ranks "
          f"x 1 thread): {result['same_threads']}x; by CPU seconds (1 rank / the busiest of 2): "
          f"{result['scale_out_cpu']}x; negatives identical; machine ceiling for 2 processes "
          f"{machine['ceiling']}x", flush=True)
    return result


def power_fit(sizes: list[int], seconds: list[float]) -> tuple[float, float]:
    """``(a, b)`` of ``seconds ~ a N^b``, least squares in log-log."""
    b, log_a = np.polyfit(np.log(sizes), np.log(seconds), 1)
    return float(np.exp(log_a)), float(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each configuration at the first size")
    parser.add_argument("--words", action="store_true", help="hand the ranks segmented words: the mining alone")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--copy-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ready", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--copies", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        return worker(args.worker, args.threads)
    if args.copy_worker is not None:
        return copy_worker(args.copy_worker, args.ready, args.copies)
    if not (TITLES.is_file() and COCO.is_file()):
        sys.exit(f"benchmark data not found under {DATA} (needs real-titles/ and coco-cn/): nothing measured")
    from taomm.text.segment import segment

    sizes = sorted(args.sizes)
    texts = [text.replace("\n", " ") for text in build_corpus(sizes[-1], args.seed)]
    result: dict = {"cores": os.cpu_count(), "sizes": sizes, "segmented_in_the_ranks": not args.words, "growth": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i, size in enumerate(sizes):
            captions = Path(tmp) / f"captions-{size}.{'jsonl' if args.words else 'txt'}"
            lines = [json.dumps(segment(text), ensure_ascii=False) if args.words else text for text in texts[:size]]
            captions.write_text("".join(line + "\n" for line in lines), "utf-8")
            print(f"{size:,} captions:", flush=True)
            configs = ((2, 1), (1, 1), (1, 2)) if i == 0 else ((2, 1),)  # (ranks, threads)
            runs: dict[tuple[int, int], list[dict]] = {config: [] for config in configs}
            for _ in range(args.repeat if i == 0 else 1):
                for config in configs:
                    runs[config].append(timed(captions, *config))
            # Each configuration's fastest run: this machine's timings drift by a third between runs.
            fastest = {config: min(done, key=lambda r: r["total_s"]) for config, done in runs.items()}
            two = fastest[2, 1]
            result["growth"].append({"captions": size, "vectors": two["ranks"][-1]["vectors"][1],
                                     **{k: two[k] for k in ("total_s", "mine_s", "rank_s", "cpu_s")},
                                     "serial_cpu_s": round(two["cpu_s"][0] - two["ranks"][0]["cpu_seconds"], 2),
                                     "row_work_cpu_s": round(sum(r["cpu_seconds"] for r in two["ranks"]), 2)})
            if i == 0:
                assert len({r["sha"] for done in runs.values() for r in done}) == 1, "the ranks changed the negatives"
                result.update(captions=size, **compare(fastest, ceiling(captions)))
    growth = result["growth"]
    if len(growth) >= 2:
        serial = power_fit(sizes, [g["serial_cpu_s"] for g in growth])
        work = power_fit(sizes, [g["row_work_cpu_s"] for g in growth])
        result["fit"] = {"serial_a_b": [serial[0], round(serial[1], 3)], "row_work_c_d": [work[0], round(work[1], 3)]}
        for ranks in (8, 32):
            projected = serial[0] * FULL_SCALE ** serial[1] + work[0] * FULL_SCALE ** work[1] / ranks
            result[f"projected_s_3_1M_{ranks}_ranks"] = round(projected)
        print(f"growth: serial ~ N^{serial[1]:.2f}, row work ~ N^{work[1]:.2f}; projected for 3.1M captions: "
              f"{result['projected_s_3_1M_8_ranks'] / 60:.1f} min on 8 ranks (goal <= 30), "
              f"{result['projected_s_3_1M_32_ranks'] / 60:.1f} min on 32 ranks")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
