"""``taomm export-embeddings``, ``taomm search``, ``taomm recommend`` and ``taomm serve``."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from taomm.batching import BATCH_WORKERS, MAX_BATCH, QUEUE_SIZE, WINDOW_MS
from taomm.cli.common import (
    Bf16Opt,
    DeviceOpt,
    JsonOpt,
    StoreOpt,
    WorkspaceOpt,
    print_json,
    progress_bar,
    stderr_console,
    store_path,
    training_processes,
)
from taomm.errors import TaommError
from taomm.workspace import RETRIEVAL_DIR, Workspace, find_workspace

IndexOpt = Annotated[str | None, typer.Option("--index", help="Index: a folder, milvus-lite:PATH.db (embedded "
                                              "Milvus Lite) or milvus://HOST:PORT/COLLECTION (a Milvus server; "
                                              "token from $TAOMM_MILVUS_TOKEN). Default: the workspace's index.")]
EncoderOpt = Annotated[str, typer.Option("--encoder", help="Query encoder: auto (the index's ONNX text encoder in "
                                         "onnxruntime when it has one, onnxruntime is installed and the device is "
                                         "cpu; else torch; serve with batching on: torch, faster for batches), "
                                         "torch or onnx.")]


# ranks wait for rank 0 while it writes their blocks and builds the index: long on millions
EXPORT_TIMEOUT = timedelta(hours=12)


def _index_path(index: str | None, ws: Workspace | None) -> str:
    if index is not None:
        return index
    if ws is None:
        raise TaommError("no --index and no workspace: pass --index INDEX")
    return ws.index_location()


def export_embeddings_command(
    model: Annotated[Path | None, typer.Option("--model", help="Retrieval model or run folder. Default: the "
                                               "workspace's runs/retrieval.")] = None,
    store: StoreOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Index folder. Default: the workspace's index.",
                                             file_okay=False)] = None,
    index: IndexOpt = None,
    index_type: Annotated[str, typer.Option("--index-type", help="auto (exact up to 100k items, IVF-PQ with "
                                            "exact refine above), flat, hnsw or ivfpq (in Milvus: "
                                            "FLAT, HNSW, and IVF_FLAT for ivfpq).")] = "auto",
    hnsw_m: Annotated[int, typer.Option("--hnsw-m", min=4, help="HNSW links per node.")] = 32,
    ef_search: Annotated[int, typer.Option("--ef-search", min=1, help="HNSW search depth.")] = 128,
    nlist: Annotated[int | None, typer.Option("--nlist", min=1, help="IVF lists (default 4 sqrt(N)).")] = None,
    nprobe: Annotated[int, typer.Option("--nprobe", min=1, help="IVF lists searched per query.")] = 256,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="Items manifest, for image paths. Default: "
                                                  "the workspace's.", dir_okay=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 128,
    bf16: Bf16Opt = True,
    device: DeviceOpt = "",
    onnx: Annotated[bool, typer.Option("--onnx", help="Also export the text (query) encoder as ONNX "
                                       "(text_encoder.onnx, hashed in the manifest): search and serve then encode "
                                       "queries with onnxruntime on CPU, faster than torch. Needs "
                                       "pip install 'taomm[onnx]'.")] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export the image vectors (text search) and the cross-modal item vectors (recommendation)
    of every item, with faiss indexes, the id map, item metadata and a manifest of hashes.

    Each export is a new version folder made current atomically (in Milvus, a new collection
    made current by switching an alias): readers never see a half-written index. Items are
    encoded and written in batches (--batch-size), never all in memory. Under torchrun each
    rank encodes a block of items on its own device and rank 0 writes the index (the
    manifest's "ranks" records each rank's share).
    """
    from taomm.datasets.sharded import open_store
    from taomm.index import IndexParams, export_index
    from taomm.train.finetune import resolve_model_dir

    ws = find_workspace(workspace)
    if out is not None and index is not None:
        raise TaommError("give --out (a folder) or --index, not both")
    model, store, target, manifest = _export_paths(ws, model, store, str(out) if out else index, manifest)
    params = IndexParams(kind=index_type, hnsw_m=hnsw_m, hnsw_ef_search=ef_search, ivf_nlist=nlist, ivf_nprobe=nprobe)
    with open_store(store) as fs:
        total = len(fs)
    with training_processes(device, EXPORT_TIMEOUT) as ranks, (  # each rank a block of items; rank 0 writes
            progress_bar("exporting", total) if ranks.is_main else nullcontext(None)) as advance:
        version = export_index(resolve_model_dir(model), store, target, params, manifest=manifest,
                               batch_size=batch_size, bf16=bf16, on_progress=advance, onnx=onnx, ranks=ranks)
    if version is None:  # not rank 0
        return
    summary = _export_summary(target, version)
    if json_out:
        print_json(summary)
    else:
        where = f"{target} ({version})" if isinstance(version, str) else str(version)
        stderr_console().print(f"exported {summary['items']} items to {where} "
                               f"({summary['index_params']['image']['type']} index, now current)")


def _export_paths(ws: Workspace | None, model: Path | None, store: Path | None, out: str | None,
                  manifest: Path | None) -> tuple[Path, Path, str, Path | None]:
    """--model, --store, --out/--index and --manifest, by default the workspace's."""
    if model is None:
        if ws is None:
            raise TaommError("no --model and no workspace: pass --model DIR")
        model = ws.path("runs") / RETRIEVAL_DIR
    store = store_path(store, ws)
    out = _index_path(out, ws)
    if manifest is None and ws is not None:
        manifest = ws.source("manifest")
    return model, store, out, manifest


def _export_summary(out: str, version: Path | str) -> dict[str, Any]:
    """What export-embeddings reports (--json), from the new version's manifest."""
    import json

    from taomm.milvus_index import is_milvus, milvus_location, read_manifest
    from taomm.onnx_text import ONNX_NAME

    if is_milvus(out):
        data = read_manifest(milvus_location(out), str(version))
    else:
        data = json.loads((Path(version) / "manifest.json").read_text("utf-8"))
        out = str(Path(out).resolve())
    return {"index": out, "version": data["version"], "items": data["count"],
            "dims": data["dims"], "index_params": data["index"], "images_known": data["images_known"],
            "onnx": ONNX_NAME in data["files"], "ranks": data.get("ranks", [])}


def _engine(index: str | None, workspace: Path | None, device: str, encoder: str = "auto"):
    from taomm.search import SearchEngine

    return SearchEngine(_index_path(index, find_workspace(workspace)), device=device or None, encoder=encoder)


def search_command(
    query: Annotated[str, typer.Argument(help="What to look for, e.g. 波点荷叶边裙.")],
    index: IndexOpt = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="Results to show.")] = 10,
    rerank: Annotated[int | None, typer.Option("--rerank", min=1, help="Candidates reranked by ITM (photo "
                                               "against query). Default: 16 with --target image, none for "
                                               "listings (ITM does not see the title).")] = None,
    no_rerank: Annotated[bool, typer.Option("--no-rerank", help="Vector search only.")] = False,
    target: Annotated[str, typer.Option("--target", help="item: the listings' vectors (photo + title); image: "
                                        "the photos alone.")] = "item",
    device: DeviceOpt = "",
    encoder: EncoderOpt = "auto",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Text-to-image search: clean the query like a title, encode it and find the nearest
    listings (photo + title item vectors) with faiss; with --target image, the nearest photos,
    the top ones reranked by image-text matching (--rerank K for listings too)."""
    hits = _engine(index, workspace, device, encoder).search(query, k=k, rerank=0 if no_rerank else rerank, target=target)
    if json_out:
        print_json([{k2: v for k2, v in h.to_json().items() if k2 != "rank"} for h in hits])
        return
    _table(hits)


def recommend_command(
    item_id: Annotated[str, typer.Argument(help="An item id of the index.")],
    index: IndexOpt = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="Similar items to show.")] = 5,
    device: DeviceOpt = "",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Similar items: the nearest items by the cross-modal item vector (image + title)."""
    # no query to encode: the engine loads neither an encoder nor the model
    hits = _engine(index, workspace, device).recommend(item_id, k=k)
    if json_out:
        print_json([{k2: v for k2, v in h.to_json().items() if k2 != "rank"} for h in hits])
        return
    _table(hits)


def _table(hits) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    if not hits:
        stderr_console().print("no results")
        return
    table = Table(box=None, pad_edge=False)
    for name, justify in (("rank", "right"), ("item_id", "left"), ("score", "right"), ("title", "left"),
                          ("image", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    for h in hits:
        table.add_row(str(h.rank), h.item_id, f"{h.score:.4f}", h.title, h.image or "-")
    Console(file=sys.stdout, highlight=False, soft_wrap=True).print(table)


def serve_command(
    index: IndexOpt = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Model calls at a time (recommend, "
                                             "explain; searches when batching is off).")] = 2,
    batch_window_ms: Annotated[float, typer.Option("--batch-window-ms", min=0, help="Searches are gathered for "
                                                   "this long after the first into one batch (one text-encoder "
                                                   "pass); 0 turns batching off. Measured with the defaults (2 "
                                                   "cores, 50 clients on loopback, a mini demo index): 778 "
                                                   "searches/s, p99 209 ms, against 128/s, p99 476 ms unbatched; "
                                                   "with rerank 16, 110/s against 47/s.")] = WINDOW_MS,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Most searches a batch (1: batching off)."
                                           )] = MAX_BATCH,
    queue_size: Annotated[int, typer.Option("--queue-size", min=1, help="Most searches waiting for a batch; "
                                            "more get 503 with Retry-After.")] = QUEUE_SIZE,
    batch_workers: Annotated[int, typer.Option("--batch-workers", min=1, help="Batches run at the same time "
                                               "(each in its own thread); 2 measured no faster on 2 cores."
                                               )] = BATCH_WORKERS,
    device: DeviceOpt = "",
    encoder: EncoderOpt = "auto",
    workspace: WorkspaceOpt = None,
) -> None:
    """Serve search and recommendations over HTTP: JSON endpoints, item images, /health and
    a web page (search box, result grid, click an item for similar items)."""
    try:
        import uvicorn

        from taomm.serve import create_app
    except ImportError as exc:
        raise TaommError(f"serving needs the serve extra: pip install 'taomm[serve]' ({exc.name} is missing)") from None
    if encoder == "auto" and max_batch > 1 and batch_window_ms > 0:
        # Batches go faster through torch: measured on 2 cores, 50 clients, mini preset, 787 QPS
        # with torch against 665 with onnxruntime (which wins for one query at a time: 367 QPS
        # unbatched against torch's 128, and a 1.4 s `taomm search`).
        encoder = "torch"
    engine = _engine(index, workspace, device, encoder)
    app = create_app(engine, max_concurrency=concurrency, batch_window_ms=batch_window_ms, max_batch=max_batch,
                     queue_size=queue_size, batch_workers=batch_workers)
    stderr_console().print(f"serving {len(engine.index)} items on http://{host}:{port}/ "
                           f"(queries encoded by {engine.text_encoder.backend})")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("export-embeddings", epilog="Examples:  taomm export-embeddings   |   taomm export-embeddings "
                "--model runs/retrieval --out index --index-type hnsw   |   taomm export-embeddings --index "
                "milvus-lite:items.db   |   torchrun --nproc_per_node 8 -m taomm export-embeddings"
                )(export_embeddings_command)
    app.command("search", epilog="Examples:  taomm search 波点荷叶边裙   |   taomm search \"红色连衣裙\" --k 5 --json"
                )(search_command)
    app.command("recommend", epilog="Examples:  taomm recommend item00042   |   taomm recommend item00042 --k 5 "
                "--json")(recommend_command)
    app.command("serve", epilog="Examples:  taomm serve   |   taomm serve --host 0.0.0.0 --port 8080"
                )(serve_command)
