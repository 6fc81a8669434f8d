"""What the photo adds to search, per attribute kind, on a finished demo workspace.

After `taomm demo` (or with its stages run by hand), for the catalog's held-out queries:
precision@5 per attribute kind (colour, pattern, style, product) for item vectors built
three ways by the finetuned retrieval model: the title alone (text encoder), the photo
alone (image vector) and photo + title (the item vector listing search uses). Exact
search over every indexed item; only queries with at least 5 relevant items count. Also
prints the linear probe of the stored region features and the detector's mAP when the
demo recorded them. Pattern queries are where the photo must earn its place: a title
often leaves the pattern out, or names it with a synonym.

With ``--rephrase SEED`` the queries are written afresh instead, the way another shopper
would type them: every attribute combination the catalog's items hold (colour + product,
pattern + product or its generic noun, pattern + style + product ...), each word a seller
synonym drawn at random (圆点 for 波点, 木耳边 for 荷叶边, 裙子 for 连衣裙), in a shuffled order
now and then, sometimes spaced: phrasing the query log never held (its queries use the
canonical words in one order). Relevance is the attributes, over every indexed item.

    python benchmarks/photo_contribution.py --workspace taomm-demo [--rephrase 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from taomm.datasets import demo_vocab as vocab
from taomm.datasets.demo_catalog import matches
from taomm.demo import STATE_FILE, precision_by_kind
from taomm.search import SearchEngine
from taomm.workspace import load_workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, default=Path("taomm-demo"))
    parser.add_argument("--index", type=Path, help="Default: WORKSPACE/index")
    parser.add_argument("--rephrase", type=int, metavar="SEED",
                        help="Queries written afresh with seller synonyms (seeded) instead of the held-out ones")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ws = load_workspace(args.workspace)
    catalog_items, queries_file = ws.source("manifest"), ws.source("queries")
    if catalog_items is None or queries_file is None:
        raise SystemExit("the workspace has no catalog manifest and held-out queries (run taomm demo first)")
    attributes = _attributes(catalog_items)
    queries = [json.loads(line) for line in queries_file.read_text("utf-8").splitlines() if line.strip()]
    if args.rephrase is not None:
        queries = rephrased_queries(attributes, random.Random(args.rephrase))
    start = time.perf_counter()
    engine = SearchEngine(args.index or ws.path("index"))
    table = precision_by_kind(engine, queries, attributes, k=5)
    seconds = round(time.perf_counter() - start, 1)
    state_path = args.workspace / STATE_FILE
    stages = json.loads(state_path.read_text("utf-8")).get("stages", {}) if state_path.is_file() else {}
    probe = stages.get("prepare", {}).get("summary", {}).get("probe")
    detector = stages.get("detector", {}).get("summary", {})
    if args.json:
        print(json.dumps({"precision_by_kind": table, "probe": probe, "detector": detector, "seconds": seconds},
                         ensure_ascii=False, indent=2))
        return
    if detector:
        print(f"detector: test mAP {detector.get('mAP')}, mAP@0.5 {detector.get('mAP@0.5')}")
    if probe:
        print("linear probe of the stored region features (test items):")
        print(f"  {'group':<10}{'probe':>8}{'majority':>10}{'boxes':>7}")
        for group, row in probe.items():
            print(f"  {group:<10}{row['accuracy']:>8.3f}{row['majority']:>10.3f}{row['test']:>7}")
    kinds = list(next(iter(table.values())))
    which = "the held-out queries" if args.rephrase is None else f"{len(queries)} rephrased queries (seed {args.rephrase})"
    print(f"precision@5 per attribute kind of {which} ({seconds} s):")
    print(f"  {'item vectors':<16}" + "".join(f"{k:>16}" for k in kinds))
    for variant, row in table.items():
        print(f"  {variant:<16}" + "".join(f"{_cell(row[k]):>16}" for k in kinds))


def rephrased_queries(attributes: dict[str, dict], rng: random.Random, k: int = 5) -> list[dict]:
    """Queries for every attribute combination at least ``k`` items hold, each word a seller
    synonym drawn by ``rng`` (see the module docstring)."""
    products = {p.name: p for p in vocab.PRODUCTS}
    words = {**{c.name: c.synonyms for c in vocab.COLOURS}, **{p.name: p.synonyms for p in vocab.PATTERNS},
             **{name: tuple(w for w in synonyms if not w.isascii()) for name, synonyms in vocab.STYLES.items()}}
    combos: dict[str, dict[str, str]] = {}
    for attrs in attributes.values():
        product = products[attrs["product"]]
        noun = {"generic": product.generic} if product.generic else {"product": product.name}
        found = [{"colour": attrs["colour"], "product": product.name}]
        if attrs["pattern"] != "纯色":
            found += [{"pattern": attrs["pattern"], "product": product.name}, {"pattern": attrs["pattern"], **noun},
                      {"colour": attrs["colour"], "pattern": attrs["pattern"], "product": product.name}]
        if attrs.get("style"):
            found.append({"style": attrs["style"], "product": product.name})
            if attrs["pattern"] != "纯色":
                found += [{"pattern": attrs["pattern"], "style": attrs["style"], "product": product.name},
                          {"pattern": attrs["pattern"], "style": attrs["style"], **noun}]
        for constraints in found:
            combos[json.dumps(constraints, sort_keys=True, ensure_ascii=False)] = constraints
    queries = []
    for key in sorted(combos):
        constraints = combos[key]
        if sum(matches(attrs, constraints) for attrs in attributes.values()) < k:
            continue
        parts = [rng.choice(words[constraints[kind]]) for kind in ("colour", "pattern", "style") if kind in constraints]
        noun = rng.choice(products[constraints["product"]].synonyms) if "product" in constraints \
            else constraints["generic"]
        if rng.random() < 0.3:
            rng.shuffle(parts)
        parts.insert(rng.randrange(len(parts) + 1) if rng.random() < 0.2 else len(parts), noun)
        queries.append({"query": (" " if rng.random() < 0.3 else "").join(parts), "constraints": constraints})
    return queries


def _cell(row: dict) -> str:
    value = row["precision@5"]
    return "-" if value is None else f"{value:.3f} ({row['queries']})"


def _attributes(manifest: Path) -> dict[str, dict]:
    out = {}
    for line in manifest.read_text("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if "attributes" in row:
                out[row["item_id"]] = row["attributes"]
    return out


if __name__ == "__main__":
    main()
