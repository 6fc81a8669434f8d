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

Items arrive in batches (:class:`IndexWriter`): the vectors go to disk as they come, and
faiss reads them back in chunks, so an export never holds the catalog in memory. A version
is written into a hidden temporary folder, renamed when complete, and only then
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
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from taomm.errors import IndexIntegrityError, OptionError, TaommError
from taomm.milvus_index import check_batch

if TYPE_CHECKING:
    from taomm.train.distributed import DistInfo

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
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    index = _trained_faiss(x.shape[1], params, lambda rows: x if rows is None else x[rows], len(x))
    index.add(x)
    return index


def build_faiss_from_file(path: Path, params: dict[str, Any], chunk: int = 65_536) -> Any:
    """:func:`build_faiss` over the vectors of an ``.npy`` file, read ``chunk`` rows at a time
    (the training sample of IVF-PQ at once): the file's vectors are never all in memory
    beside the index."""
    count, dim = _npy_shape(path)

    def sample(rows: np.ndarray | None) -> np.ndarray:
        mapped = np.load(path, mmap_mode="r")  # dropped after the copy: its pages leave the RSS
        return np.asarray(mapped if rows is None else mapped[rows], dtype=np.float32)

    index = _trained_faiss(dim, params, sample, count)
    for block in npy_chunks(path, chunk):
        index.add(np.ascontiguousarray(block, dtype=np.float32))
    return index


def _trained_faiss(d: int, params: dict[str, Any], sample: Callable[[np.ndarray | None], np.ndarray], n: int) -> Any:
    """An empty index of ``params``' type, trained where the type needs it on ``sample(rows)``
    (``rows`` None: every row)."""
    import faiss

    kind = params["type"]
    if kind == "flat":
        return faiss.IndexFlatIP(d)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, params["m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
        return index
    if kind != "ivfpq":
        raise TaommError(f"unknown index type {kind!r}")
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFPQ(quantizer, d, params["nlist"], params["pq_m"], 8, faiss.METRIC_INNER_PRODUCT)
    cap = 256 * params["nlist"]  # faiss's own cap on k-means points per list
    index.train(sample(None if n <= cap else np.random.default_rng(0).choice(n, cap, replace=False)))
    index.nprobe = params["nprobe"]
    if params.get("refine"):
        index = faiss.IndexRefineFlat(index)
        index.k_factor = REFINE_K_FACTOR
    return index


def _npy_shape(path: Path) -> tuple[int, ...]:
    with open(path, "rb") as f:
        shape, _, _ = _npy_header(f)
    return shape


def _npy_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)


def npy_chunks(path: Path, chunk: int) -> Iterator[np.ndarray]:
    """The rows of a 2-d ``.npy`` file, ``chunk`` at a time, by plain reads (no memory map, whose
    pages would stay in the process's resident memory)."""
    with open(path, "rb") as f:
        (count, dim), fortran, dtype = _npy_header(f)
        if fortran:
            raise TaommError(f"{path}: a Fortran-ordered array")
        for start in range(0, count, chunk):
            rows = min(chunk, count - start)
            yield np.fromfile(f, dtype=dtype, count=rows * dim).reshape(rows, dim)


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


class IndexWriter:
    """A new version of the index ``root``, written as batches of items arrive in row order
    (:meth:`write`), then completed and made current (:meth:`finish`); the vectors go to disk
    as they come, and faiss reads them back in chunks. As a context manager it removes the
    unfinished version on an error."""

    def __init__(self, root: str | os.PathLike[str], count: int, dims: dict[str, int]) -> None:
        self.root = Path(root)
        (self.root / VERSIONS).mkdir(parents=True, exist_ok=True)
        self.name = next_version(self.root)
        self.tmp = self.root / VERSIONS / f".tmp-{self.name}-{os.getpid()}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        self.count, self.dims, self.rows = count, dims, 0
        self._files = ExitStack()
        self._ids = self._open(IDS, "w")
        self._ids.write("[")
        self._items = self._open(ITEMS, "w")
        self._vectors = {kind: self._open(VECTORS[kind], "wb") for kind in dims}
        for kind, f in self._vectors.items():
            np.lib.format.write_array_header_1_0(f, {"descr": np.dtype(np.float16).str, "fortran_order": False,
                                                     "shape": (count, dims[kind])})

    def _open(self, name: str, mode: str) -> Any:
        # open until finish() or abort() closes them all: longer than any with-block here
        return self._files.enter_context(open(self.tmp / name, mode, encoding=None if "b" in mode else "utf-8"))  # noqa: SIM115

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if exc is not None:
            self.abort()

    def write(self, item_ids: list[str], items: list[dict[str, Any]], vectors: dict[str, np.ndarray]) -> None:
        """The next ``len(item_ids)`` rows: ids, metadata and (n, E) vectors of each kind."""
        n = len(item_ids)
        check_batch(self.rows, self.count, self.dims, item_ids, items, vectors)
        self._ids.write((", " if self.rows else "") + ", ".join(json.dumps(i, ensure_ascii=False) for i in item_ids))
        self._items.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in items)
        for kind, f in self._vectors.items():
            f.write(np.ascontiguousarray(vectors[kind], dtype=np.float16).tobytes())
        self.rows += n

    def abort(self) -> None:
        self._files.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def finish(self, params: IndexParams, info: dict[str, Any], keep: int = 2,
               write_extra: Callable[[Path], None] | None = None) -> Path:
        """Build the faiss indexes, write the manifest, and make the version current; keep the
        last ``keep`` versions. ``write_extra(folder)`` may add files to the version folder;
        the manifest lists and hashes them like the others."""
        import faiss

        if self.rows != self.count:
            raise TaommError(f"the index was given {self.rows} of its {self.count} items")
        self._ids.write("]")
        self._files.close()
        tmp, index_params = self.tmp, {}
        for kind, dim in self.dims.items():
            index_params[kind] = params.resolved(self.count, dim)
            faiss.write_index(build_faiss_from_file(tmp / VECTORS[kind], index_params[kind]), str(tmp / INDEXES[kind]))
        if write_extra is not None:
            write_extra(tmp)
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {"format": FORMAT, "version": self.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "count": self.count, "dims": self.dims, "index": index_params, **info,
                    "files": {f: sha256_file(tmp / f) for f in files}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", "utf-8")
        for f in [*files, MANIFEST]:
            fd = os.open(tmp / f, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        return _make_current(self.root, tmp, self.name, keep)


def _make_current(root: Path, tmp: Path, name: str, keep: int) -> Path:
    """Rename the complete version folder into place, switch ``current`` to it atomically and
    drop all but the last ``keep`` versions."""
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


def write_index(root: str | os.PathLike[str], item_ids: list[str], items: list[dict[str, Any]],
                vectors: dict[str, np.ndarray], params: IndexParams, info: dict[str, Any], keep: int = 2,
                write_extra: Callable[[Path], None] | None = None) -> Path:
    """Write a new version of the index from items in memory (:class:`IndexWriter`) and make it
    current; keep the last ``keep`` versions."""
    with IndexWriter(root, len(item_ids), {k: int(v.shape[1]) for k, v in vectors.items()}) as writer:
        writer.write(item_ids, items, vectors)
        return writer.finish(params, info, keep, write_extra)


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

    def category_ids(self) -> np.ndarray | None:
        """Per row its category id (-1: none); None for an empty index or one exported before
        categories were recorded."""
        if not self.items or any("category" not in it for it in self.items):
            return None
        return np.asarray([it["category"]["id"] if it["category"] else -1 for it in self.items], dtype=np.int64)


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


@dataclass
class ItemBatch:
    """Consecutive rows of an export: ids, metadata and vectors (n, E) float16 of each kind."""

    item_ids: list[str]
    items: list[dict[str, Any]]
    vectors: dict[str, np.ndarray]

    def pack(self) -> bytes:
        """As bytes (to send to rank 0; no pickle): a JSON header's length (8 bytes), the
        header, then each kind's vectors."""
        head = json.dumps({"ids": self.item_ids, "items": self.items,
                           "shapes": {k: list(v.shape) for k, v in self.vectors.items()}}).encode()
        return b"".join([len(head).to_bytes(8, "little"), head, *(v.astype("<f2").tobytes() for v in self.vectors.values())])

    @classmethod
    def unpack(cls, data: bytes) -> ItemBatch:
        size = int.from_bytes(data[:8], "little")
        head = json.loads(data[8:8 + size])
        vectors, at = {}, 8 + size
        for kind, shape in head["shapes"].items():
            n = int(np.prod(shape)) * 2
            vectors[kind] = np.frombuffer(data[at:at + n], dtype="<f2").reshape(shape)
            at += n
        return cls(head["ids"], head["items"], vectors)


# The store is read through LMDB's memory map, whose pages stay in the process's resident set
# while mapped: an export closes the store every this many items (nothing it keeps points
# into the map), so a million-item store never is all resident at once.
RELEASE_EVERY = 65_536


@dataclass
class ExportJob:
    """What each rank of an export needs to turn its rows of the store into batches (:class:`ItemBatch`)."""

    model: Any
    store: Any
    tokenizer: Any
    images: dict[str, str]
    batch_size: int = 128
    bf16: bool = True

    def batches(self, rows: range) -> Iterator[ItemBatch]:
        """The image-alone and cross-modal item vectors of the store's ``rows``, in batches;
        one batch's items read from the store once."""
        import torch

        from taomm.device import autocast
        from taomm.retrieval import encode_loaded

        model, cfg = self.model, self.model.config
        device = next(model.parameters()).device
        classes = list(self.store.meta.classes)
        model.eval()
        read = 0
        for start in range(rows.start, rows.stop, self.batch_size):
            if read >= RELEASE_EVERY:  # the next read maps the store again
                self.store.close()
                read = 0
            loaded = [self.store[o] for o in range(start, min(rows.stop, start + self.batch_size))]
            read += len(loaded)
            enc = encode_loaded(loaded, self.tokenizer, max_tokens=cfg.max_text_tokens, max_regions=cfg.max_regions)
            feats, boxes, mask = (t.to(device) for t in (enc.region_features, enc.region_boxes, enc.region_mask))
            with torch.no_grad(), autocast(device, self.bf16):
                image = model.encode_image(feats, boxes, mask)
                item = model.encode_item(enc.input_ids.to(device), enc.attention_mask.to(device), feats, boxes, mask)
            ids = [it.item_id for it in loaded]
            meta = [{"item_id": it.item_id, "title": it.title, "image": self.images.get(it.item_id),
                     "category": item_category(it, classes)} for it in loaded]
            yield ItemBatch(ids, meta, {"image": image.float().cpu().numpy().astype(np.float16),
                                        "item": item.float().cpu().numpy().astype(np.float16)})


def export_index(model_dir: str | os.PathLike[str], store_path: str | os.PathLike[str], out: str | os.PathLike[str],
                 params: IndexParams | None = None, manifest: str | os.PathLike[str] | None = None,
                 device: str | None = None, batch_size: int = 128, bf16: bool = True,
                 on_progress: Callable[[int], None] | None = None, onnx: bool = False,
                 ranks: DistInfo | None = None) -> Path | str | None:
    """Vectors of every item of the store by the retrieval model in ``model_dir``, written
    batch by batch as a new current version of the index ``out``; with ``onnx``, the model's
    text encoder too, as ``text_encoder.onnx`` (``taomm.onnx_text``), for query encoding on CPU.
    Returns the version folder, or for a Milvus ``out`` the new collection's name.

    ``ranks``: the torchrun group (``taomm.train.distributed.setup``; its device replaces
    ``device``). Each rank encodes its block of rows (``row_share``); rank 0 writes its own
    as they come, then receives the other ranks' blocks in rank order, records every rank's
    share in the manifest (``ranks``) and completes the index; other ranks return None."""
    import torch

    from taomm.datasets.sharded import open_store
    from taomm.device import resolve_device
    from taomm.train.distributed import DistInfo, all_gather_json, check_row_shares, on_every_rank

    ranks = ranks or DistInfo(device=torch.device(resolve_device(device)))
    model, tokenizer, sha256 = on_every_rank(lambda: _export_model(model_dir, out, onnx, ranks), ranks)
    root, images = image_map(manifest)
    with open_store(store_path) as store, ExitStack() as cleanup:
        job = ExportJob(model, store, tokenizer, images, batch_size, bf16)
        sink = on_every_rank(lambda: _open_sink(out, len(store), model.config, params, ranks, cleanup), ranks)
        share, spool = on_every_rank(lambda: _export_block(job, sink, ranks, on_progress, cleanup), ranks)
        shares = all_gather_json(share, ranks)
        if problems := check_row_shares(shares, len(store)):
            raise TaommError(f"the ranks' shares do not cover the store once: {'; '.join(problems)}")
        if not ranks.is_main:
            _send_block(spool, ranks)
            return None
        known = share["images_known"] + _receive_blocks(sink, ranks, on_progress)
        info = {"model": {"path": str(Path(model_dir).resolve()), "sha256": sha256, "config": model.config.to_dict()},
                "store": {"path": str(Path(store_path).resolve()), "items": len(store)},
                "taxonomy": {"name": store.meta.taxonomy, "classes": list(store.meta.classes)},
                "image_root": str(root) if root else None, "images_known": known,
                "ranks": [{k: v for k, v in s.items() if k != "images_known"} for s in shares]}
        if isinstance(sink, IndexWriter):
            extra = _onnx_writer(model) if onnx else None
            return sink.finish(params or IndexParams(), info, write_extra=extra)
        return sink.finish(info)


def _export_model(model_dir: str | os.PathLike[str], out: str | os.PathLike[str], onnx: bool,
                  ranks: DistInfo) -> tuple[Any, Any, str]:
    """The retrieval model on this rank's device, its tokenizer and its weights' sha256, once
    the output is known to be writable (rank 0; before the vectors, which take long)."""
    from taomm.milvus_index import connect, is_milvus, milvus_location
    from taomm.model import InterBertForRetrieval
    from taomm.model.pretrained import VOCAB_NAME, WEIGHTS_NAME
    from taomm.text.tokenizer import TitleTokenizer

    if is_milvus(out):
        if onnx:
            raise OptionError("the ONNX query encoder is kept in index folders only: a Milvus index encodes "
                              "queries with its model in torch (drop {onnx=True})", "onnx=True")
        if ranks.is_main:  # Milvus Lite: one process a file; a server: rank 0 writes
            connect(milvus_location(str(out)))  # a missing extra or an unreachable server: now
    if onnx:
        from taomm.onnx_text import require_exporter

        require_exporter()
    model_dir = Path(model_dir).resolve()
    model = InterBertForRetrieval.from_pretrained(model_dir)
    if model.load_report.missing:
        raise TaommError(f"{model_dir} lacks the retrieval heads: finetune it with `taomm finetune-retrieval`")
    return model.to(ranks.device), TitleTokenizer(model_dir / VOCAB_NAME), sha256_file(model_dir / WEIGHTS_NAME)


def _open_sink(out: str | os.PathLike[str], count: int, config: Any, params: IndexParams | None, ranks: DistInfo,
               cleanup: ExitStack) -> Any:
    """Rank 0's writer of the new index version, an :class:`IndexWriter` or a ``MilvusWriter``
    (removed again if the export fails); None on the other ranks."""
    from taomm.milvus_index import MilvusWriter, is_milvus, milvus_location

    if count == 0:
        raise TaommError("the store holds no items")
    if not ranks.is_main:
        return None
    dims = {"image": config.retrieval_embedding_size, "item": config.item_embedding_size}
    if is_milvus(out):
        return cleanup.enter_context(MilvusWriter(milvus_location(str(out)), count, dims, params or IndexParams()))
    return cleanup.enter_context(IndexWriter(out, count, dims))


def _export_block(job: ExportJob, sink: Any, ranks: DistInfo, on_progress: Callable[[int], None] | None,
                  cleanup: ExitStack) -> tuple[dict[str, Any], Any]:
    """This rank's block of rows: written to the index on rank 0, spooled to a local temporary
    file on the others (sent later: :func:`_send_block`). Returns the rank's share and spool."""
    from taomm.train.distributed import row_share

    rows = row_share(len(job.store), ranks.rank, ranks.world_size)
    t0, handled, known = time.perf_counter(), 0, 0
    spool = None if ranks.is_main else cleanup.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
    for batch in job.batches(rows):
        if spool is None:
            sink.write(batch.item_ids, batch.items, batch.vectors)
            if on_progress is not None:
                on_progress(len(batch.item_ids))
        else:
            data = batch.pack()
            spool.write(len(data).to_bytes(8, "little") + data)
        handled += len(batch.item_ids)
        known += sum(1 for it in batch.items if it["image"])
    share = {"rank": ranks.rank, "rows": [rows.start, rows.stop], "handled": handled, "images_known": known,
             "seconds": round(time.perf_counter() - t0, 3)}
    return share, spool


def _send_block(spool: Any, ranks: DistInfo) -> None:
    """Send this rank's spooled batches to rank 0, then an empty message: the end."""
    from taomm.train.distributed import send_bytes

    spool.seek(0)
    while size := int.from_bytes(spool.read(8) or b"\0", "little"):
        send_bytes(spool.read(size), 0, ranks)
    send_bytes(b"", 0, ranks)


def _receive_blocks(sink: Any, ranks: DistInfo, on_progress: Callable[[int], None] | None) -> int:
    """Rank 0: the other ranks' batches, in rank order, into the index; returns how many of
    their items have a known image."""
    from taomm.train.distributed import recv_bytes

    known = 0
    for source in range(1, ranks.world_size):
        while data := recv_bytes(source, ranks):
            batch = ItemBatch.unpack(data)
            sink.write(batch.item_ids, batch.items, batch.vectors)
            known += sum(1 for it in batch.items if it["image"])
            if on_progress is not None:
                on_progress(len(batch.item_ids))
    return known


def _onnx_writer(model: Any) -> Callable[[Path], None]:
    from taomm.onnx_text import ONNX_NAME, export_text_encoder

    return lambda folder: export_text_encoder(model, folder / ONNX_NAME)
