"""TF-IDF hard-negative mining speed: taomm's exact miner vs scikit-learn + brute-force cosine.

Contract (DESIGN.md section 7): exact top-30 below 0.5, fast enough for 3.1M captions.
Goals: >= 18x faster than the baseline, recall@30 >= 0.99 against it.

Corpus: ``--captions`` (default 100,000) captions made from 2,673 real Taobao titles
(``real-titles/product1m_dev.txt``) and 4,712 COCO-CN captions (``coco-cn/...icap2020.txt``).
Each caption is a uniformly drawn base caption (segmented with ``taomm.text.segment``) with,
at equal odds, one variation (fixed seed):

- kept as is (exact duplicates happen, as in real listings);
- word drops: every word dropped with probability 0.2 (at least one word stays);
- chunk shuffle: the words cut into 2-4 contiguous chunks, the chunks permuted;
- splice: a prefix of the caption followed by a suffix of another random base caption.

The variants are joined back into strings and the whole corpus is segmented once (timed
separately, part of neither side). Both sides then start from the same word lists:

- ours: ``mine_hard_negatives`` (TF-IDF + mining), at half the corpus and the full corpus;
  the growth exponent between the two sizes projects the time for 3.1M captions;
- baseline: ``TfidfVectorizer(analyzer=lambda d: d)`` + ``linear_kernel`` (dense output;
  rows are l2-normalised, so it is the cosine, and faster than ``cosine_similarity``)
  over chunks of query rows against all rows, self and sims >= 0.5 masked, per-row top-30
  by ``argpartition``. It runs on ``--sample`` random query rows and is extrapolated
  linearly in rows (its cost is rows x N); recall@30 is measured on those rows.

    python benchmarks/mining.py [--captions 100000] [--sample 5000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from taomm.text.mining import mine_hard_negatives, tokens
from taomm.text.segment import segment

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TITLES = DATA / "real-titles" / "product1m_dev.txt"
COCO = DATA / "coco-cn" / "coco-cn_ext.icap2020.txt"
TOP_K, MAX_SIM, FULL_SCALE = 30, 0.5, 3_100_000


def base_captions() -> list[str]:
    titles = [line.split("#####")[1] for line in TITLES.read_text("utf-8").splitlines() if "#####" in line]
    coco = [line.split("\t", 1)[1] for line in COCO.read_text("utf-8").splitlines() if "\t" in line]
    return titles + coco


def vary(words: list[str], bases: list[list[str]], rng: np.random.Generator) -> list[str]:
    """One variation of a segmented caption (see the module docstring)."""
    kind = int(rng.integers(4))
    if kind == 1:
        kept = [w for w in words if rng.random() >= 0.2]
        return kept or words[:1]
    if kind == 2:
        chunks = np.array_split(np.arange(len(words)), int(rng.integers(2, 5)))
        return [words[i] for c in rng.permutation(len(chunks)) for i in chunks[c]]
    if kind == 3:
        other = bases[int(rng.integers(len(bases)))]
        cut_a, cut_b = int(rng.integers(1, max(2, len(words)))), int(rng.integers(0, max(1, len(other))))
        return words[:cut_a] + other[cut_b:]
    return words


def build_corpus(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    bases = [segment(text) for text in base_captions()]
    return ["".join(vary(bases[int(rng.integers(len(bases)))], bases, rng)) for _ in range(count)]


def baseline(docs: list[list[str]], queries: np.ndarray, chunk: int = 250) -> tuple[np.ndarray, np.ndarray, float]:
    """scikit-learn TF-IDF + dense brute-force cosine top-k for ``queries``; returns seconds too."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import linear_kernel

    t0 = time.perf_counter()
    x = TfidfVectorizer(analyzer=lambda d: d).fit_transform([tokens(d) for d in docs])
    tfidf_s = time.perf_counter() - t0
    indices = np.full((queries.size, TOP_K), -1)
    sims = np.zeros((queries.size, TOP_K))
    t0 = time.perf_counter()
    for a in range(0, queries.size, chunk):
        rows = queries[a:a + chunk]
        s = linear_kernel(x[rows], x, dense_output=True)
        s[np.arange(rows.size), rows] = -1.0
        s[s >= MAX_SIM] = -1.0
        top = np.argpartition(-s, TOP_K, axis=1)[:, :TOP_K]
        top_sims = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-top_sims, axis=1)
        top, top_sims = np.take_along_axis(top, order, 1), np.take_along_axis(top_sims, order, 1)
        valid = top_sims > 0
        indices[a:a + chunk] = np.where(valid, top, -1)
        sims[a:a + chunk] = np.where(valid, top_sims, 0.0)
    scale = len(docs) / queries.size
    return indices, sims, tfidf_s + (time.perf_counter() - t0) * scale


def recall(ours: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray]) -> float:
    """Share of the baseline's neighbours that ours has, or matches by a tie (|sim diff| <= 1e-6)."""
    found = total = 0
    for oi, os_, ri, rs in zip(ours[0], ours[1], ref[0], ref[1], strict=True):
        mine, mine_sims = set(oi[oi >= 0].tolist()), os_[oi >= 0]
        for j, s in zip(ri[ri >= 0].tolist(), rs[ri >= 0].tolist(), strict=True):
            total += 1
            found += j in mine or bool(np.any(np.abs(mine_sims - s) <= 1e-6))
    return found / max(total, 1)


def timed_mine(docs: list[list[str]]) -> tuple[tuple[np.ndarray, np.ndarray], float]:
    t0 = time.perf_counter()
    result = mine_hard_negatives(docs, top_k=TOP_K, max_sim=MAX_SIM)
    return result, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--captions", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=5_000, help="baseline query rows (extrapolated)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (TITLES.is_file() and COCO.is_file()):
        sys.exit(f"benchmark data not found under {DATA} (needs real-titles/ and coco-cn/): nothing measured")

    texts = build_corpus(args.captions, args.seed)
    t0 = time.perf_counter()
    docs = [segment(text) for text in texts]
    segment_s = time.perf_counter() - t0
    half = len(docs) // 2
    mine_hard_negatives(docs[:200], top_k=TOP_K, max_sim=MAX_SIM)  # compile the kernel outside the timings
    _, ours_half_s = timed_mine(docs[:half])
    ours, ours_s = timed_mine(docs)
    queries = np.sort(np.random.default_rng(args.seed).choice(len(docs), min(args.sample, len(docs)), replace=False))
    ref_idx, ref_sims, base_s = baseline(docs, queries)
    per = 100_000 / len(docs)  # times are reported per 100k captions (linear scaling)
    exponent = float(np.log(ours_s / ours_half_s) / np.log(len(docs) / half))
    result = {
        "captions": len(docs), "segment_s": round(segment_s, 2),
        "ours_s_per_100k": round(ours_s * per, 2), "ours_half_s": round(ours_half_s, 2),
        "baseline_s_per_100k": round(base_s * per, 1), "baseline_sampled_rows": int(queries.size),
        "ratio": round(base_s / ours_s, 1),
        "recall_at_30": round(recall((ours[0][queries], ours[1][queries]), (ref_idx, ref_sims)), 5),
        "growth_exponent": round(exponent, 3),
        "projected_s_3_1M": round(ours_s * (FULL_SCALE / len(docs)) ** exponent, 0),
    }
    print(f"corpus:   {len(docs):,} captions, segmented once in {segment_s:.2f} s (not counted)")
    print(f"ours:     {result['ours_s_per_100k']} s per 100k  ({half:,} captions: {ours_half_s:.2f} s)")
    print(f"baseline: {result['baseline_s_per_100k']} s per 100k  (sklearn TF-IDF + linear_kernel, measured on "
          f"{queries.size:,} query rows x all {len(docs):,} rows, extrapolated linearly in rows)")
    print(f"ratio:    {result['ratio']}x  (goal >= 18x)   recall@30: {result['recall_at_30']}  (goal >= 0.99)")
    print(f"growth:   time ~ N^{exponent:.2f}; projected for 3.1M captions: "
          f"{result['projected_s_3_1M']:,.0f} s ({result['projected_s_3_1M'] / 3600:.1f} h)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
