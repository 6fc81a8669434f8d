"""The item index: exported vectors, faiss indexes, id map and item metadata, versioned.

Layout of an index folder::

    INDEX/current -> versions/v0003          (a symlink, switched atomically)
    INDEX/versions/v0003/manifest.json       counts, dimensions, model hash, index parameters,
                                             sha256 of every other file
                         ids.json            row -> item_id
                         items.jsonl         item_id, title, image (relative to image_root),
                                             category ({"id", "name"} of its main region's
                                             class, or null; absent in older indexes)
                         image_vectors.npy   (N, E) float16: image alone (text search)
                         item_vectors.npy    (N, E) float16: image + title (recommendation)
                         image.faiss         inner-product index over the image vectors
                         item.faiss          inner-product index over the item vectors
                         text_encoder.onnx   the query encoder as ONNX (optional: `--onnx`)

A version is written into a hidden temporary folder, renamed when complete, and only then
made current by replacing the ``current`` symlink (``os.replace``), so a reader never sees
a half-written index. Readers check every file against the manifest's sha256 before faiss
reads it.

The index folder is the default backend; an index location ``milvus-lite:PATH.db`` or
``milvus://HOST:PORT/COLLECTION`` puts the same content into Milvus instead
(``taomm.milvus_index``): ``export_index`` writes either, ``open_index`` opens either, and
both readers answer ``ItemIndex``'s interface (``manifest``, ``item_ids``, ``items``,
``rows``, ``search``, ``vector``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taomm.errors import IndexIntegrityError, OptionError, TaommError

FORMAT = 1
MANIFEST, IDS, ITEMS = "manifest.json", "ids.json", "items.jsonl"
VECTORS = {"image": "image_vectors.npy", "item": "item_vectors.npy"}
INDEXES = {"image": "image.faiss", "item": "item.faiss"}
CURRENT, VERSIONS = "current", "versions"
EXACT_LIMIT = 100_000  # auto: exact search up to this many items, IVF-PQ + exact refine above
INDEX_TYPES = ("auto", "flat", "hnsw", "ivfpq")
REFINE_K_FACTOR = 16  # IVF-PQ: candidates re-ranked exactly = k x this
_VERSION = re.compile(r"^v(\d{4,})$")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class IndexParams:
    kind: str = "auto"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_nlist: int | None = None  # default: 4 * sqrt(N)
    # 1M clustered vectors, 4,000 lists (measured recall@10 / ms): nprobe 32 k 4: 0.87 / 0.6;
    # 128 k 8: 0.94 / 1.4; 256 k 16: 0.98 / 2.6
    ivf_nprobe: int = 256
    pq_m: int | None = None  # default: dim / 4 sub-quantizers of 8 bits
    refine: bool = True  # IVF-PQ: re-rank the candidates with the exact vectors

    def resolved(self, count: int, dim: int) -> dict[str, Any]:
        kind = self.kind
        if kind not in INDEX_TYPES:
            raise TaommError(f"index type must be one of {', '.join(INDEX_TYPES)}, not {kind!r}")
        if kind == "auto":
            # measured (benchmarks/search_latency.py, clustered vectors): IVF-PQ + refine keeps
            # recall@10 >= 0.99 at 0.3 ms a query on 100k items, HNSW (M 32, efSearch 128)
            # only 0.77 on the same inner-product data
            kind = "flat" if count <= EXACT_LIMIT else "ivfpq"
        if kind == "hnsw":
            return {"type": "hnsw", "m": self.hnsw_m, "ef_construction": self.hnsw_ef_construction,
                    "ef_search": self.hnsw_ef_search}
        if kind == "ivfpq":
            nlist = self.ivf_nlist or max(1, min(count // 39, int(4 * count ** 0.5)))
            pq_m = self.pq_m or max(1, dim // 4)
            if dim % pq_m:
                raise OptionError(f"{{pq_m}} {pq_m} must divide the vector dimension {dim}", "pq_m")
            return {"type": "ivfpq", "nlist": nlist, "nprobe": min(self.ivf_nprobe, nlist), "pq_m": pq_m,
                    "refine": self.refine}
        return {"type": "flat"}


def build_faiss(vectors: np.ndarray, params: dict[str, Any]) -> Any:
    """An inner-product faiss index over unit ``vectors`` (float32) with ``params``."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    kind = params["type"]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, params["m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
    elif kind == "ivfpq":
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFPQ(quantizer, d, params["nlist"], params["pq_m"], 8, faiss.METRIC_INNER_PRODUCT)
        sample = x if n <= 256 * params["nlist"] else x[np.random.default_rng(0).choice(n, 256 * params["nlist"],
                                                                                        replace=False)]
        index.train(sample)
        index.nprobe = params["nprobe"]
        if params.get("refine"):
            index = faiss.IndexRefineFlat(index)
            index.k_factor = REFINE_K_FACTOR
    else:
        raise TaommError(f"unknown index type {kind!r}")
    index.add(x)
    return index


def configure_search(index: Any, params: dict[str, Any]) -> Any:
    """Search-time parameters that faiss does not keep in the file."""
    import faiss

    if params["type"] == "hnsw":
        index.hnsw.efSearch = params["ef_search"]
    elif params["type"] == "ivfpq":
        base = faiss.downcast_index(index.base_index) if isinstance(index, faiss.IndexRefine) else index
        faiss.extract_index_ivf(base).nprobe = params["nprobe"]
        if isinstance(index, faiss.IndexRefine):
            index.k_factor = REFINE_K_FACTOR
    return index


def maybe_gpu(index: Any) -> Any:
    """The index on the GPU when faiss-gpu is installed and a GPU is present (flat indexes)."""
    import faiss

    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0 and isinstance(index, faiss.IndexFlat):
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


# --- writing ---------------------------------------------------------------------------

def next_version(root: Path) -> str:
    versions = root / VERSIONS
    numbers = [int(m.group(1)) for p in versions.iterdir() if (m := _VERSION.match(p.name))] if versions.is_dir() else []
    return f"v{max(numbers, default=0) + 1:04d}"


def write_index(root: str | os.PathLike[str], item_ids: list[str], items: list[dict[str, Any]],
                vectors: dict[str, np.ndarray], params: IndexParams, info: dict[str, Any], keep: int = 2,
                write_extra: Callable[[Path], None] | None = None) -> Path:
    """Write a new version of the index and make it current; keep the last ``keep`` versions.
    ``write_extra(folder)`` may add files to the version folder; the manifest lists and hashes
    them like the others."""
    import faiss

    root = Path(root)
    (root / VERSIONS).mkdir(parents=True, exist_ok=True)
    name = next_version(root)
    tmp = root / VERSIONS / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    count = len(item_ids)
    (tmp / IDS).write_text(json.dumps(item_ids, ensure_ascii=False), "utf-8")
    with open(tmp / ITEMS, "w", encoding="utf-8") as f:
        for row in items:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    index_params = {}
    for kind, array in vectors.items():
        if array.shape[0] != count:
            raise TaommError(f"{kind} vectors: {array.shape[0]} rows for {count} items")
        np.save(tmp / VECTORS[kind], array.astype(np.float16), allow_pickle=False)
        index_params[kind] = params.resolved(count, array.shape[1])
        faiss.write_index(build_faiss(array.astype(np.float32), index_params[kind]), str(tmp / INDEXES[kind]))
    if write_extra is not None:
        write_extra(tmp)
    files = sorted(p.name for p in tmp.iterdir())
    manifest = {"format": FORMAT, "version": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "count": count,
                "dims": {k: int(v.shape[1]) for k, v in vectors.items()}, "index": index_params, **info,
                "files": {f: sha256_file(tmp / f) for f in files}}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", "utf-8")
    for f in [*files, MANIFEST]:
        fd = os.open(tmp / f, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    final = root / VERSIONS / name
    os.rename(tmp, final)
    link = root / f".{CURRENT}.tmp-{os.getpid()}"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(Path(VERSIONS) / name, link)
    os.replace(link, root / CURRENT)  # atomic: readers see the old version or the new one
    old = sorted((int(m.group(1)), p) for p in (root / VERSIONS).iterdir() if (m := _VERSION.match(p.name)))
    for _, path in old[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)
    return final


# --- reading ---------------------------------------------------------------------------

def resolve_version(path: str | os.PathLike[str]) -> Path:
    """An index root (its ``current`` version) or a version folder itself."""
    root = Path(path)
    if (root / MANIFEST).is_file():
        return root
    current = root / CURRENT
    if current.exists():
        return current.resolve()
    raise TaommError(f"no index at {root}: run `taomm export-embeddings` first")


@dataclass
class ItemIndex:
    """A verified index version: ids, metadata, vectors and faiss indexes."""

    path: Path
    manifest: dict[str, Any]
    item_ids: list[str]
    items: list[dict[str, Any]]
    vectors: dict[str, np.ndarray]
    faiss: dict[str, Any]
    rows: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows = {item_id: i for i, item_id in enumerate(self.item_ids)}

    def __len__(self) -> int:
        return len(self.item_ids)

    def search(self, kind: str, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the ``k`` nearest items of each query vector (rows -1 past the end)."""
        k = min(k, len(self))
        scores, rows = self.faiss[kind].search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, rows

    def vector(self, kind: str, row: int) -> np.ndarray:
        """The stored vector (1, E) float32 of the item at ``row``."""
        return self.vectors[kind][row: row + 1].astype(np.float32)


def verify(version: Path) -> dict[str, Any]:
    """The manifest, once every file it lists matches its sha256; else one clear error."""
    try:
        manifest = json.loads((version / MANIFEST).read_text("utf-8"))
    except FileNotFoundError:
        raise IndexIntegrityError(f"{version / MANIFEST} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexIntegrityError(f"{version / MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise IndexIntegrityError(f"{version / MANIFEST} is not an index manifest of format {FORMAT}")
    needed = {IDS, ITEMS, *VECTORS.values(), *INDEXES.values()}
    missing = sorted(needed - set(manifest["files"]))
    if missing:
        raise IndexIntegrityError(f"{version / MANIFEST} does not list {', '.join(missing)}")
    for name, digest in manifest["files"].items():
        path = version / name
        if Path(name).name != name or name.startswith("."):
            raise IndexIntegrityError(f"{version / MANIFEST} lists an odd file name {name!r}")
        if not path.is_file():
            raise IndexIntegrityError(f"{path} is missing")
        if sha256_file(path) != digest:
            raise IndexIntegrityError(f"{path} does not match its sha256 in the manifest (changed or truncated): "
                                      "re-run `taomm export-embeddings`")
    return manifest


def open_index(path: str | os.PathLike[str], gpu: bool = True) -> Any:
    """Verify, then load an index (``path``: the index root or a version folder) -> ItemIndex;
    a Milvus location (module docstring) -> ``taomm.milvus_index.MilvusIndex``."""
    from taomm.milvus_index import MilvusIndex, is_milvus, milvus_location

    if is_milvus(path):
        return MilvusIndex(milvus_location(str(path)))
    import faiss

    version = resolve_version(path)
    manifest = verify(version)
    item_ids = json.loads((version / IDS).read_text("utf-8"))
    items = [json.loads(line) for line in (version / ITEMS).read_text("utf-8").splitlines()]
    count = manifest["count"]
    vectors, indexes = {}, {}
    for kind in VECTORS:
        vectors[kind] = np.load(version / VECTORS[kind], allow_pickle=False)
        index = configure_search(faiss.read_index(str(version / INDEXES[kind])), manifest["index"][kind])
        indexes[kind] = maybe_gpu(index) if gpu else index
        if vectors[kind].shape != (count, manifest["dims"][kind]) or index.ntotal != count:
            raise IndexIntegrityError(
                f"{version / MANIFEST} says {count} items of dimension {manifest['dims'][kind]}, but "
                f"{VECTORS[kind]} holds {vectors[kind].shape} and {INDEXES[kind]} {index.ntotal} vectors")
    if len(item_ids) != count or len(items) != count or len(set(item_ids)) != count:
        raise IndexIntegrityError(f"{version / IDS} does not hold the {count} distinct items that "
                                  f"{MANIFEST} and {ITEMS} describe")
    return ItemIndex(version, manifest, item_ids, items, vectors, indexes)


def export_vectors(model: Any, store: Any, tokenizer: Any, ordinals: np.ndarray, batch_size: int = 128,
                   bf16: bool = True, on_progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Image-alone vectors and cross-modal item vectors of the store's items -> (N, E) float32."""
    import torch

    from taomm.device import autocast
    from taomm.retrieval import encode_items

    cfg = model.config
    device = next(model.parameters()).device
    model.eval()
    out: dict[str, list[np.ndarray]] = {"image": [], "item": []}
    with torch.no_grad(), autocast(device, bf16):
        for start in range(0, len(ordinals), batch_size):
            enc = encode_items(store, ordinals[start:start + batch_size], tokenizer,
                               max_tokens=cfg.max_text_tokens, max_regions=cfg.max_regions)
            feats, boxes, mask = (t.to(device) for t in (enc.region_features, enc.region_boxes, enc.region_mask))
            out["image"].append(model.encode_image(feats, boxes, mask).float().cpu().numpy())
            out["item"].append(model.encode_item(enc.input_ids.to(device), enc.attention_mask.to(device), feats,
                                                 boxes, mask).float().cpu().numpy())
            if on_progress is not None:
                on_progress(len(enc.input_ids))
    return {k: np.concatenate(v) if v else np.zeros((0, 1), np.float32) for k, v in out.items()}


def image_map(manifest: str | os.PathLike[str] | None) -> tuple[Path | None, dict[str, str]]:
    """The items' image paths from a prepare manifest, relative to its folder (the root
    images are served from); empty without a manifest."""
    if manifest is None or not Path(manifest).is_file():
        return None, {}
    from taomm.datasets.manifest import ManifestEntry, read_manifest

    root = Path(manifest).parent.resolve()
    found = {}
    for entry in read_manifest(Path(manifest)):
        if isinstance(entry, ManifestEntry):
            try:
                found[entry.item_id] = Path(entry.image).resolve().relative_to(root).as_posix()
            except ValueError:  # not under the root: never served
                continue
    return root, found


def item_category(item: Any, classes: list[str]) -> dict[str, Any] | None:
    """An item's category for search facets: the class of its main region (the largest
    box with a known class, ``main_region``) as ``{"id", "name"}``; None without one."""
    from taomm.datasets.store import main_region

    region = main_region(item)
    if region is None:
        return None
    label = int(item.labels[region])
    return {"id": label, "name": classes[label]}


def export_index(model_dir: str | os.PathLike[str], store_path: str | os.PathLike[str], out: str | os.PathLike[str],
                 params: IndexParams | None = None, manifest: str | os.PathLike[str] | None = None,
                 device: str | None = None, batch_size: int = 128, bf16: bool = True,
                 on_progress: Callable[[int], None] | None = None, onnx: bool = False) -> Path | str:
    """Vectors of every item of the store by the retrieval model in ``model_dir``, written
    as a new current version of the index ``out``; with ``onnx``, the model's text encoder
    too, as ``text_encoder.onnx`` (``taomm.onnx_text``), for query encoding on CPU. Returns
    the version folder, or for a Milvus ``out`` the new collection's name."""
    from taomm.datasets.sharded import open_store
    from taomm.device import resolve_device
    from taomm.milvus_index import connect, is_milvus, milvus_location, write_milvus
    from taomm.model import InterBertForRetrieval
    from taomm.model.pretrained import VOCAB_NAME, WEIGHTS_NAME
    from taomm.text.tokenizer import TitleTokenizer

    milvus = milvus_location(str(out)) if is_milvus(out) else None
    if milvus is not None:  # before the vectors, which take long
        if onnx:
            raise OptionError("the ONNX query encoder is kept in index folders only: a Milvus index encodes "
                              "queries with its model in torch (drop {onnx=True})", "onnx=True")
        connect(milvus)  # a missing extra or an unreachable server: now, not after an hour

    if onnx:
        from taomm.onnx_text import ONNX_NAME, export_text_encoder, require_exporter

        require_exporter()  # before the vectors, which take long
    model_dir = Path(model_dir).resolve()
    model = InterBertForRetrieval.from_pretrained(model_dir)
    if model.load_report.missing:
        raise TaommError(f"{model_dir} lacks the retrieval heads: finetune it with `taomm finetune-retrieval`")
    device = resolve_device(device)
    model.to(device)
    tokenizer = TitleTokenizer(model_dir / VOCAB_NAME)
    root, images = image_map(manifest)
    with open_store(store_path) as store:
        if len(store) == 0:
            raise TaommError(f"the store {store_path} holds no items")
        ordinals = np.arange(len(store))
        vectors = export_vectors(model, store, tokenizer, ordinals, batch_size, bf16, on_progress)
        item_ids = list(store.item_ids())
        classes = list(store.meta.classes)
        items = [{"item_id": i, "title": store[o].title, "image": images.get(i),
                  "category": item_category(store[o], classes)} for o, i in enumerate(item_ids)]
        store_info = {"path": str(Path(store_path).resolve()), "items": len(store)}
        taxonomy = {"name": store.meta.taxonomy, "classes": classes}
    info = {"model": {"path": str(model_dir), "sha256": sha256_file(model_dir / WEIGHTS_NAME),
                      "config": model.config.to_dict()},
            "store": store_info, "taxonomy": taxonomy, "image_root": str(root) if root else None,
            "images_known": sum(1 for it in items if it["image"])}
    if milvus is not None:
        return write_milvus(milvus, item_ids, items, vectors, params or IndexParams(), info)
    write_extra = (lambda folder: export_text_encoder(model, folder / ONNX_NAME)) if onnx else None
    return write_index(out, item_ids, items, vectors, params or IndexParams(), info, write_extra=write_extra)
