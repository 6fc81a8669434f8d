"""Query encoding on CPU: the text tower in torch against its ONNX export in onnxruntime.

Same process, same model, same token ids, same threads (``torch.set_num_threads`` equals
onnxruntime's intra-op threads). The model: a workspace's retrieval model (``--workspace``),
an index's model and its ``text_encoder.onnx`` (``--index``), else a random model at the
demo's preset (``mini``: H=256, 2 interaction + 1 + 1 extractor layers) with the
bert-base-chinese vocabulary when ``../shared/data`` has it. Queries: real titles cut to
their first 12 words (the title pipeline's segmentation), else generated short queries;
[CLS] tokens [SEP], at most 40 tokens, as ``SearchEngine.query_ids``.

Timed: ``encoder(input_ids, mask)``, the call ``SearchEngine.encode_ids`` makes (numpy in,
numpy out), at batch 1 (a search) and batch 32 (a batched server), torch and onnx taking
turns in blocks, each after a warm-up; median and best of ``--repeats`` calls. Torch runs
in fp32 as the ONNX graph does; ``torch bf16`` (what ``SearchEngine(bf16=True)`` runs on a CPU
with native bf16) is timed too where the CPU has it. Parity: the least cosine between the
two encoders' vectors over every query.

Goal: ONNX >= 1.5x faster than torch (fp32) at batch 1 on CPU.

    python benchmarks/onnx_encoder.py [--workspace demo | --index demo/index] [--threads 2] [--repeats 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from taomm.onnx_text import ONNX_NAME, OnnxTextEncoder, export_text_encoder
from taomm.search import TorchTextEncoder

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VOCAB = DATA / "bert-base-chinese" / "vocab.txt"
TITLES = DATA / "real-titles" / "product1m_dev.txt"
WORDS = ["红色", "蓝色", "白色", "黑色", "波点", "条纹", "格子", "碎花", "纯色", "荷叶边", "百褶", "女装", "男款",
         "新款", "夏季", "连衣裙", "半身裙", "衬衫", "卫衣", "帆布鞋", "双肩包", "牛仔裤", "羽绒服", "加厚"]
MAX_WORDS, MAX_TOKENS = 12, 40


def load_model(args: argparse.Namespace):
    """(model, tokenizer, onnx path or None, what it is)."""
    from taomm.model import InterBertConfig, InterBertForRetrieval
    from taomm.text.tokenizer import TitleTokenizer

    onnx_path = None
    if args.index is not None:
        from taomm.index import open_index

        index = open_index(args.index)
        model_dir = Path(index.manifest["model"]["path"])
        if ONNX_NAME in index.manifest["files"]:
            onnx_path = index.path / ONNX_NAME
    elif args.workspace is not None:
        from taomm.train.finetune import resolve_model_dir
        from taomm.workspace import load_workspace

        model_dir = resolve_model_dir(load_workspace(args.workspace).path("runs") / "retrieval")
    else:
        model_dir = None
    if model_dir is not None:
        return (InterBertForRetrieval.from_pretrained(model_dir).eval(), TitleTokenizer(model_dir / "vocab.txt"),
                onnx_path, str(model_dir))
    if VOCAB.is_file():
        tok = TitleTokenizer(VOCAB)
    else:
        vocab = Path(tempfile.mkdtemp()) / "vocab.txt"
        chars = sorted(set("".join(WORDS)))
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n", "utf-8")
        tok = TitleTokenizer(vocab)
    torch.manual_seed(0)
    model = InterBertForRetrieval(InterBertConfig.from_preset("mini", vocab_size=len(tok))).eval()
    return model, tok, None, f"random mini, vocab {len(tok)}"


def query_ids(tok, count: int) -> tuple[list[list[int]], str]:
    """Token ids of ``count`` queries: real titles cut to 12 words, else generated ones."""
    if TITLES.is_file():
        from taomm.text.clean import TitleCleaner

        cleaner = TitleCleaner()
        titles = [line.split("#####")[1] for line in TITLES.read_text("utf-8").splitlines() if "#####" in line]
        queries = [cleaned.words[:MAX_WORDS] for t in titles[: count * 2] if (cleaned := cleaner(t)).kept][:count]
        source = "real titles, first 12 words"
    else:
        rng = np.random.default_rng(0)
        queries = [[WORDS[j] for j in rng.choice(len(WORDS), int(rng.integers(2, 6)), replace=False)]
                   for _ in range(count)]
        source = "generated 2-5 word queries"
    ids = [[tok.cls_id, *tok.encode_words(words).ids[: MAX_TOKENS - 2].tolist(), tok.sep_id] for words in queries]
    return ids, source


def pad(batch: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token id lists -> (B, T) int64 ids and bool mask, as SearchEngine.encode_ids pads them."""
    width = max(len(ids) for ids in batch)
    input_ids = np.full((len(batch), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=bool)
    for i, ids in enumerate(batch):
        input_ids[i, :len(ids)], mask[i, :len(ids)] = ids, True
    return input_ids, mask


def time_calls(encoders: dict, batches: list, repeats: int, warmup: int, rounds: int = 5) -> dict[str, list[float]]:
    """Seconds of each call, per encoder. The encoders take turns in blocks (``rounds`` of
    them, each after ``warmup`` untimed calls): call by call, each would pay for the other's
    thread pool still spinning (measured: torch 3.3 -> 8.2 ms a query next to onnxruntime)."""
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for r in range(rounds):
        for name, encoder in encoders.items():
            for i in range(-warmup, repeats // rounds):
                input_ids, mask = batches[(r * repeats + i) % len(batches)]
                t0 = time.perf_counter()
                encoder(input_ids, mask)
                if i >= 0:
                    times[name].append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, help="A workspace with runs/retrieval (its model)")
    parser.add_argument("--index", type=Path, help="An index (its model, and its text_encoder.onnx if any)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch and onnxruntime threads")
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per encoder and batch size")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls before each block")
    args = parser.parse_args()

    from taomm.device import cpu_has_bf16

    torch.set_num_threads(args.threads)
    model, tok, onnx_path, described = load_model(args)
    ids, source = query_ids(tok, args.queries)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        if onnx_path is None:
            onnx_path = export_text_encoder(model, Path(tmp) / ONNX_NAME)
        export_s = time.perf_counter() - t0
        encoders = {"torch": TorchTextEncoder(model, torch.device("cpu"), bf16=False),
                    "onnx": OnnxTextEncoder(onnx_path, threads=args.threads)}
        if cpu_has_bf16():
            encoders["torch bf16"] = TorchTextEncoder(model, torch.device("cpu"), bf16=True)
        size_mb = onnx_path.stat().st_size / 2**20

        rows, results = [], {}
        for batch_size in (1, 32):
            batches = [pad(ids[s:s + batch_size], tok.pad_id) for s in range(0, len(ids) - batch_size + 1, batch_size)]
            times = time_calls(encoders, batches, args.repeats, args.warmup)
            ms = {name: (statistics.median(t) * 1e3, min(t) * 1e3) for name, t in times.items()}
            results[batch_size] = {name: {"median_ms": round(m, 3), "best_ms": round(b, 3)} for name, (m, b) in ms.items()}
            for name, (median, best) in ms.items():
                ratio = ms[name][0] / ms["onnx"][0]
                rows.append((batch_size, name, median, best, ratio))
            results[batch_size]["torch/onnx"] = round(ms["torch"][0] / ms["onnx"][0], 2)

        cosines = []
        for s in range(0, len(ids), 32):
            input_ids, mask = pad(ids[s:s + 32], tok.pad_id)
            a, b = encoders["onnx"](input_ids, mask), encoders["torch"](input_ids, mask)
            cosines.append((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))
        cosine_min = float(np.concatenate(cosines).min())

    lengths = [len(x) for x in ids]
    print(f"model: {described}; onnx {size_mb:.1f} MB" + (f", exported in {export_s:.1f} s" if export_s > 0.01 else ""))
    print(f"queries: {len(ids)} {source}; tokens median {int(np.median(lengths))}, max {max(lengths)}")
    print(f"threads: {args.threads} (torch and onnxruntime); {args.repeats} timed calls in 5 blocks, each after "
          f"{args.warmup} warm-up")
    print()
    print(f"{'batch':>5}  {'encoder':<11} {'median ms':>10} {'best ms':>9} {'x onnx':>7}")
    for batch_size, name, median, best, ratio in rows:
        print(f"{batch_size:>5}  {name:<11} {median:>10.3f} {best:>9.3f} {ratio:>7.2f}")
    print()
    print(f"speed-up torch/onnx (median): batch 1 {results[1]['torch/onnx']:.2f}x, "
          f"batch 32 {results[32]['torch/onnx']:.2f}x (goal: >= 1.5x at batch 1)")
    print(f"parity: cosine min {cosine_min:.6f} over {len(ids)} queries")
    print(json.dumps({"threads": args.threads, "batch_1": results[1], "batch_32": results[32],
                      "cosine_min": round(cosine_min, 6)}))


if __name__ == "__main__":
    main()
