"""Text pipeline speed: the whole title cleaning vs single-process ``jieba.lcut`` alone.

Contract (DESIGN.md section 9): 100k titles at >= 3.5x the speed of single-process
``jieba.lcut``, with >= 99.5% token agreement with jieba when the segmenter differs.

The 100k titles are built from the 2,673 real Taobao titles of the shared reference data
with variations (seeded): a cut of one title spliced to the start of another, shuffled
halves, inserted filler words, and, for a few, traditional script, full-width ASCII,
HTML entities or extra spaces. Both sides get the same raw titles; the baseline only
segments them, taomm normalises, filters, segments and truncates them.

    python benchmarks/text_pipeline.py [--titles 100000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FILLERS = ["新款", "包邮", "正品", "2020夏季新款", "韩版", "显瘦", "百搭", "官方旗舰店", "特价", "ins风", "女装"]


def real_titles() -> list[str]:
    path = SHARED / "real-titles" / "product1m_dev.txt"
    if not path.is_file():
        sys.exit(f"needs the shared reference data: {path} is missing")
    return [line.split("#####")[1] for line in path.read_text("utf-8").splitlines() if "#####" in line]


def variations(titles: list[str], count: int, seed: int = 0) -> list[str]:
    from taomm.datasets.demo_vocab import TRADITIONAL

    rng = random.Random(seed)
    out = []
    for _ in range(count):
        a, b = rng.choice(titles), rng.choice(titles)
        cut = rng.randint(len(a) // 3, len(a))
        title = a[:cut] + b[rng.randint(0, len(b) // 2):] if rng.random() < 0.6 else a
        if rng.random() < 0.5:
            half = len(title) // 2
            title = title[half:] + title[:half]
        for _ in range(rng.randint(0, 2)):
            pos = rng.randint(0, len(title))
            title = title[:pos] + rng.choice(FILLERS) + title[pos:]
        r = rng.random()
        if r < 0.03:
            title = title.translate(TRADITIONAL)
        elif r < 0.06:
            title = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in title)
        elif r < 0.08:
            title = f"&lt;b&gt;{title}&lt;/b&gt;&amp;&nbsp;"
        elif r < 0.10:
            title = "  ".join(title[i:i + 5] for i in range(0, len(title), 5))
        out.append(title)
    return out


def agreement_with_jieba(texts: list[str]) -> tuple[str, float]:
    """taomm's segmenter backend and the share of jieba's words (with offsets) it reproduces."""
    from taomm.text.segment import Segmenter, token_agreement

    ours = Segmenter("auto")
    return ours.backend, token_agreement(texts, reference=Segmenter("jieba"), candidate=ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--titles", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import jieba

    from taomm.text.clean import TitleCleaner, clean_titles
    from taomm.text.normalize import normalize_title

    raw = variations(real_titles(), args.titles)
    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    TitleCleaner()  # load dictionaries and lexicons outside the timings, like jieba.initialize()

    t0 = time.perf_counter()
    for title in raw:
        jieba.lcut(title)
    jieba_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    results = list(clean_titles(raw, workers=args.workers, chunk_size=2048))
    ours_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    single = TitleCleaner()
    for title in raw[:20000]:
        single(title)
    single_rate = 20000 / (time.perf_counter() - t0)

    backend, agreement = agreement_with_jieba([normalize_title(t) for t in raw[:20000]])
    reasons: dict[str, int] = {}
    for r in results:
        reasons[r.reason or "kept"] = reasons.get(r.reason or "kept", 0) + 1
    result = {
        "titles": len(raw), "workers": args.workers, "segmenter": backend,
        "jieba_lcut_titles_per_s": round(len(raw) / jieba_s),
        "taomm_titles_per_s": round(len(raw) / ours_s),
        "taomm_single_process_titles_per_s": round(single_rate),
        "ratio": round(jieba_s / ours_s, 2),
        "token_agreement_with_jieba": round(agreement, 5),
        "verdicts": reasons,
    }
    print(f"jieba.lcut (1 process): {result['jieba_lcut_titles_per_s']:,} titles/s")
    print(f"taomm clean ({args.workers} workers):  {result['taomm_titles_per_s']:,} titles/s "
          f"(1 process: {result['taomm_single_process_titles_per_s']:,}/s)")
    print(f"ratio: {result['ratio']}x  (goal >= 3.5x); token agreement with jieba ({backend}): "
          f"{agreement:.2%} (goal >= 99.5%)")
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
