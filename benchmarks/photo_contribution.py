"""What the photo adds to search, per attribute kind, on a finished demo workspace.

After `taomm demo` (or with its stages run by hand), for the catalog's held-out queries:
precision@5 per attribute kind (colour, pattern, style, product) for item vectors built
three ways by the finetuned retrieval model: the title alone (text encoder), the photo
alone (image vector) and photo + title (the item vector listing search uses). Exact
search over every indexed item; only queries with at least 5 relevant items count. Also
prints the linear probe of the stored region features and the detector's mAP when the
demo recorded them. Pattern queries are where the photo must earn its place: a title
often leaves the pattern out, or names it with a synonym.

    python benchmarks/photo_contribution.py --workspace taomm-demo [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from taomm.demo import STATE_FILE, precision_by_kind
from taomm.search import SearchEngine
from taomm.workspace import load_workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, default=Path("taomm-demo"))
    parser.add_argument("--index", type=Path, help="Default: WORKSPACE/index")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ws = load_workspace(args.workspace)
    catalog_items, queries_file = ws.source("manifest"), ws.source("queries")
    if catalog_items is None or queries_file is None:
        raise SystemExit("the workspace has no catalog manifest and held-out queries (run taomm demo first)")
    attributes = _attributes(catalog_items)
    queries = [json.loads(line) for line in queries_file.read_text("utf-8").splitlines() if line.strip()]
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
    print(f"precision@5 per attribute kind of the held-out queries ({seconds} s):")
    print(f"  {'item vectors':<16}" + "".join(f"{k:>16}" for k in kinds))
    for variant, row in table.items():
        print(f"  {variant:<16}" + "".join(f"{_cell(row[k]):>16}" for k in kinds))


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
