"""The item index in Milvus: the faiss index folder's content (``taomm.index``) as versioned
Milvus collections, for catalogs that outgrow one host.

Where (``milvus_location``)::

    milvus-lite:PATH.db                  embedded Milvus Lite (no server; one process a file)
    milvus://HOST:PORT/COLLECTION        a Milvus server; port 443: TLS (Zilliz Cloud); the
                                         token, if any, from $TAOMM_MILVUS_TOKEN

Each export is a new collection ``COLLECTION_vNNNN``, one entity an item:

    row        INT64 primary key   the item's row (0..N-1), as in the faiss folder's ids.json
    item_id    VARCHAR
    title      VARCHAR
    image      VARCHAR             relative to the manifest's image_root; "" when unknown
    category   INT64               class id of the item's main region; -1 without one
    image_vec  FLOAT_VECTOR (E)    image alone (text search with target image)
    item_vec   FLOAT_VECTOR (E)    image + title (search, recommendation)

Both vector fields are unit vectors searched by inner product (``IP``), exactly (``FLAT``) up
to ``taomm.index.EXACT_LIMIT`` items, by ``IVF_FLAT`` above (or ``HNSW`` when asked:
``index_params``). The faiss folder's manifest (model path and sha256, version, counts,
taxonomy, image root) is the collection's property ``taomm.manifest`` (JSON; the model's
sha256 and the version also as ``taomm.model_sha256`` and ``taomm.version``), set only once
the collection is flushed, indexed and loaded; then the alias ``COLLECTION`` is switched to
it, so readers, who open the alias, never see a half-written index. The last ``keep``
collections stay; older ones are dropped.

Queries are encoded by the model the manifest names (its folder must be readable where
search runs); there is no ONNX query encoder for a Milvus index: it lives in index folders.
pymilvus (and milvus-lite) are the ``milvus`` extra, imported only inside the functions here.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taomm.errors import TaommError

LITE_PREFIX, SERVER_PREFIX = "milvus-lite:", "milvus://"
TOKEN_ENV = "TAOMM_MILVUS_TOKEN"
DEFAULT_COLLECTION = "taomm_items"  # a Milvus Lite file's collection (alias)
MANIFEST_PROPERTY = "taomm.manifest"
VECTOR_FIELDS = {"image": "image_vec", "item": "item_vec"}  # index kinds (taomm.index.VECTORS) -> fields
MAX_CHARS = {"item_id": 256, "title": 2048, "image": 1024}  # VARCHAR limits (bytes = 4x: UTF-8)
INSERT_BATCH = 1000
METADATA = ("item_id", "title", "image", "category")  # what a reader reads of an item besides its vectors
CACHED_ITEMS = 100_000  # a reader keeps the metadata of the last rows it has seen (search hits, lookups)
EXTRA_HINT = "pip install 'taomm[milvus]'"
_NULL_HANDLER = logging.NullHandler()
_log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")


@dataclass(frozen=True)
class MilvusLocation:
    """A Milvus index: what ``MilvusClient`` connects to, and the collection alias."""

    uri: str  # a Milvus Lite file path, or http(s)://host:port
    collection: str
    token: str = field(default="", repr=False)

    def __str__(self) -> str:
        if self.uri.startswith(("http://", "https://")):
            return f"{SERVER_PREFIX}{self.uri.split('://', 1)[1]}/{self.collection}"
        return f"{LITE_PREFIX}{self.uri}"


def is_milvus(location: Any) -> bool:
    """Whether an index location (a path or a URI) names a Milvus index."""
    return isinstance(location, str) and location.startswith((LITE_PREFIX, SERVER_PREFIX))


def milvus_location(text: str) -> MilvusLocation:
    """A Milvus index from its URI (module docstring); a Lite path relative to the current folder."""
    if text.startswith(LITE_PREFIX):
        path = Path(text[len(LITE_PREFIX):]).expanduser()
        if not path.name.endswith(".db"):
            raise TaommError(f"a Milvus Lite index is a file ending in .db: {LITE_PREFIX}PATH.db, not {text!r}")
        return MilvusLocation(str(path.absolute()), DEFAULT_COLLECTION)
    match = re.fullmatch(r"milvus://([^/:]+):(\d+)/([^/]+)", text)
    if match is None:
        raise TaommError(f"a Milvus index is milvus://HOST:PORT/COLLECTION or {LITE_PREFIX}PATH.db, not {text!r}")
    host, port, collection = match.groups()
    if not _NAME.match(collection):
        raise TaommError(f"{collection!r} is not a Milvus collection name (letters, digits, _)")
    scheme = "https" if port == "443" else "http"
    return MilvusLocation(f"{scheme}://{host}:{port}", collection, os.environ.get(TOKEN_ENV, ""))


def require_extra() -> None:
    """One clear error when the milvus extra (pymilvus) is not installed."""
    try:
        import pymilvus  # noqa: F401
    except ImportError as exc:
        raise TaommError(f"a Milvus index needs the milvus extra: {EXTRA_HINT} ({exc.name} is missing)") from None


def connect(location: MilvusLocation) -> Any:
    """A ``MilvusClient`` for ``location``, or one clear error."""
    require_extra()
    from pymilvus import MilvusClient

    if not location.uri.startswith(("http://", "https://")):
        Path(location.uri).parent.mkdir(parents=True, exist_ok=True)
        # Milvus Lite logs a failed start (a file locked by another process) with its traceback
        # to stderr when the application configured no logging; the error below says it in a line
        logging.getLogger("milvus_lite").addHandler(_NULL_HANDLER)
    try:
        return MilvusClient(uri=location.uri, token=location.token)
    except Exception as exc:  # pymilvus raises its own exception types, not one base
        hint = " (Milvus Lite opens a file in one process at a time)" if LITE_PREFIX in str(location) else ""
        raise TaommError(f"cannot connect to Milvus at {location}{hint}: {_message(exc)}") from None


def _message(exc: Exception) -> str:
    return str(getattr(exc, "message", "") or exc).splitlines()[0] if str(exc) else type(exc).__name__


def _versions(client: Any, alias: str) -> list[tuple[int, str]]:
    pattern = re.compile(rf"^{re.escape(alias)}_v(\d{{4,}})$")
    return sorted((int(m.group(1)), name) for name in client.list_collections() if (m := pattern.match(name)))


def _current(client: Any, alias: str) -> str | None:
    """The collection the alias points to, None without the alias."""
    if alias not in client.list_aliases().get("aliases", []):
        return None
    return client.describe_alias(alias)["collection_name"]


def index_params(params: Any, count: int, dim: int) -> dict[str, Any]:
    """The Milvus index for ``params`` (``taomm.index.IndexParams``) over ``count`` vectors:
    ``{"type", "build": build params, "search": search params}``. The faiss choice, made by
    ``IndexParams.resolved``, carried over: exact, HNSW, or for IVF-PQ the same lists with
    the exact vectors (``IVF_FLAT``: what IVF-PQ's exact refine approximates)."""
    faiss = params.resolved(count, dim)
    if faiss["type"] == "hnsw":
        return {"type": "HNSW", "build": {"M": faiss["m"], "efConstruction": faiss["ef_construction"]},
                "search": {"ef": faiss["ef_search"]}}
    if faiss["type"] == "ivfpq":
        return {"type": "IVF_FLAT", "build": {"nlist": faiss["nlist"]}, "search": {"nprobe": faiss["nprobe"]}}
    return {"type": "FLAT", "build": {}, "search": {}}


def check_batch(rows: int, count: int, dims: dict[str, int], item_ids: list[str], items: list[dict[str, Any]],
                vectors: dict[str, np.ndarray]) -> None:
    """A batch of items fits an index (a folder or a collection) of ``count`` items that holds ``rows`` so far: one metadata
    row and one vector of each kind's dimension per item, no more items than announced."""
    n = len(item_ids)
    if len(items) != n or rows + n > count:
        raise TaommError(f"a batch of {n} ids and {len(items)} items at row {rows} of {count}")
    for kind, dim in dims.items():
        if vectors[kind].shape != (n, dim):
            raise TaommError(f"{kind} vectors: {vectors[kind].shape} for {n} items of dimension {dim}")


class MilvusWriter:
    """A new collection version at ``location``, written as batches of items arrive in row
    order (:meth:`write`), then indexed and made current by the alias (:meth:`finish`). As a
    context manager it drops the unfinished collection on an error. ``params``: ``IndexParams``."""

    def __init__(self, location: MilvusLocation, count: int, dims: dict[str, int], params: Any) -> None:
        from pymilvus import DataType, MilvusClient

        self.location, self.count, self.dims, self.rows = location, count, dims, 0
        self.client = client = connect(location)
        alias = location.collection
        number = max((n for n, _ in _versions(client, alias)), default=0) + 1
        self.name, self.version = f"{alias}_v{number:04d}", f"v{number:04d}"
        self.built = {kind: index_params(params, count, dim) for kind, dim in dims.items()}
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("row", DataType.INT64, is_primary=True)
        for key, chars in MAX_CHARS.items():
            schema.add_field(key, DataType.VARCHAR, max_length=4 * chars)
        schema.add_field("category", DataType.INT64)
        for kind, dim in dims.items():
            schema.add_field(VECTOR_FIELDS[kind], DataType.FLOAT_VECTOR, dim=dim)
        with self._failing("creating"):
            client.create_collection(self.name, schema=schema)

    def __enter__(self) -> MilvusWriter:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if exc is not None:
            self.abort()

    @contextmanager
    def _failing(self, doing: str) -> Iterator[None]:
        """A pymilvus error as one TaommError; the unfinished collection dropped."""
        try:
            yield
        except TaommError:
            self.abort()
            raise
        except Exception as exc:  # pymilvus raises its own exception types, not one base
            self.abort()
            raise TaommError(f"Milvus at {self.location}: {doing} {self.name} failed: {_message(exc)}") from None

    def abort(self) -> None:
        """Drop the unfinished collection (never leave a half-written version behind)."""
        try:
            self.client.drop_collection(self.name)
        except Exception:  # noqa: BLE001 - already failing: the first error is the one to report
            _log.debug("dropping %s failed", self.name, exc_info=True)

    def write(self, item_ids: list[str], items: list[dict[str, Any]], vectors: dict[str, np.ndarray]) -> None:
        """The next ``len(item_ids)`` rows: ids, metadata and (n, E) vectors of each kind."""
        check_batch(self.rows, self.count, self.dims, item_ids, items, vectors)
        with self._failing("writing"):
            for start in range(0, len(items), INSERT_BATCH):
                stop = min(len(items), start + INSERT_BATCH)
                self.client.insert(self.name, [_entity(self.rows + i, items[i], vectors, i) for i in range(start, stop)])
        self.rows += len(items)

    def finish(self, info: dict[str, Any], keep: int = 2) -> str:
        """Flush, index and load the collection, record the manifest, switch the alias to it and
        keep the last ``keep`` versions; returns the collection's name."""
        if self.rows != self.count:
            raise TaommError(f"the index was given {self.rows} of its {self.count} items")
        client, name, alias = self.client, self.name, self.location.collection
        with self._failing("indexing"):
            client.flush(name)
            indexes = client.prepare_index_params()
            for kind, p in self.built.items():
                indexes.add_index(VECTOR_FIELDS[kind], index_type=p["type"], metric_type="IP", params=p["build"])
            client.create_index(name, indexes)
            client.load_collection(name)
            manifest = {"format": 1, "backend": "milvus", "version": self.version, "collection": name,
                        "count": self.count, "dims": self.dims, "index": self.built, **info, "files": {}}
            # the completion marker: a collection without it is never made current
            client.alter_collection_properties(name, {MANIFEST_PROPERTY: json.dumps(manifest, ensure_ascii=False),
                                                      "taomm.model_sha256": info["model"]["sha256"],
                                                      "taomm.version": self.version})
            if _current(client, alias) is None:
                client.create_alias(name, alias)
            else:
                client.alter_alias(name, alias)
        if keep > 0:
            for _, old in _versions(client, alias)[:-keep]:
                if old != name:
                    client.drop_collection(old)
        return name


def write_milvus(location: MilvusLocation, item_ids: list[str], items: list[dict[str, Any]],
                 vectors: dict[str, np.ndarray], params: Any, info: dict[str, Any], keep: int = 2) -> str:
    """Write items in memory as a new collection version (:class:`MilvusWriter`), make it
    current and keep the last ``keep`` versions; returns the new collection's name."""
    with MilvusWriter(location, len(item_ids), {k: int(v.shape[1]) for k, v in vectors.items()}, params) as writer:
        writer.write(item_ids, items, vectors)
        return writer.finish(info, keep)


def read_manifest(location: MilvusLocation, collection: str) -> dict[str, Any]:
    """The manifest a collection was exported with (``write_milvus``)."""
    properties = connect(location).describe_collection(collection).get("properties", {})
    if MANIFEST_PROPERTY not in properties:
        raise TaommError(f"{location} ({collection}) has no {MANIFEST_PROPERTY}: not a taomm index")
    return json.loads(properties[MANIFEST_PROPERTY])


def _entity(row: int, item: dict[str, Any], vectors: dict[str, np.ndarray], at: int) -> dict[str, Any]:
    """Row ``row`` of the index as a Milvus entity; its vectors are row ``at`` of ``vectors``."""
    text = {"item_id": item["item_id"], "title": item.get("title") or "", "image": item.get("image") or ""}
    for key, value in text.items():
        if len(value) > MAX_CHARS[key]:
            raise TaommError(f"item {item['item_id'][:64]!r}: its {key} is longer than {MAX_CHARS[key]} characters")
    category = item.get("category")
    return {"row": row, **text, "category": -1 if category is None else int(category["id"]),
            **{VECTOR_FIELDS[kind]: array[at].astype(np.float32).tolist() for kind, array in vectors.items()}}


def _name(classes: list[str], category: int) -> str:
    return classes[category] if category < len(classes) else str(category)


class MilvusIndex:
    """A Milvus index version opened through its alias: ``ItemIndex``'s reader interface
    (``manifest``, ``item_ids``, ``items``, ``rows``, ``category_ids``, ``search``,
    ``vector``). The alias is resolved at opening: a reader keeps the version it opened even
    when an export switches the alias.

    Vectors and metadata stay in Milvus, so a reader's memory does not grow with the catalog:
    opening reads the manifest and counts the entities; a search brings its hits' metadata
    with it (one round trip), kept for the last ``CACHED_ITEMS`` rows seen; an item id
    resolves to its row by a query; iterating ``items`` or ``item_ids`` reads the collection
    in batches; ``category_ids`` (facets, category filters) reads one integer per item."""

    def __init__(self, location: MilvusLocation) -> None:
        self.location = location
        self.client = client = connect(location)
        collection = _current(client, location.collection)
        if collection is None:
            raise TaommError(f"no index at {location}: run `taomm export-embeddings` first")
        self.collection = collection
        self.path = f"{location} ({collection})"  # where the index is, for messages
        self.manifest: dict[str, Any] = read_manifest(location, collection)
        client.load_collection(collection)  # a server may have released it
        self.count = count = int(self.manifest["count"])
        held = int(client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])
        if held != count:
            raise TaommError(f"{self.path} holds {held} entities, not the {count} items of its manifest")
        self.classes = (self.manifest.get("taxonomy") or {}).get("classes") or []
        self._cache: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()  # serve's threads share a reader
        self.items = _Column(self)
        self.item_ids = _Column(self, "item_id")
        self.rows = _Rows(self)

    def __len__(self) -> int:
        return self.count

    def search(self, kind: str, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the ``k`` nearest items of each query vector (B, E), each (B, k)."""
        k = min(k, len(self))
        found = self.client.search(self.collection, data=np.asarray(queries, dtype=np.float32).tolist(), limit=k,
                                   anns_field=VECTOR_FIELDS[kind], output_fields=list(METADATA),
                                   search_params={"metric_type": "IP", "params": self._search_params(kind, k)})
        scores = np.zeros((len(queries), k), np.float32)
        rows = np.full((len(queries), k), -1, np.int64)
        for b, hits in enumerate(found):
            for j, hit in enumerate(hits):
                rows[b, j], scores[b, j] = hit.get("row", hit.get("id")), hit["distance"]
                if "entity" in hit:
                    self._keep(int(rows[b, j]), self._metadata(hit["entity"]))
        return scores, rows

    def _search_params(self, kind: str, k: int) -> dict[str, Any]:
        params = dict(self.manifest["index"][kind]["search"])
        if "ef" in params:
            params["ef"] = max(params["ef"], k)  # HNSW answers at most ef results
        return params

    def vector(self, kind: str, row: int) -> np.ndarray:
        """The stored vector (1, E) float32 of the item at ``row``."""
        found = self.client.get(self.collection, ids=[int(row)], output_fields=[VECTOR_FIELDS[kind]])
        return np.asarray([found[0][VECTOR_FIELDS[kind]]], dtype=np.float32)

    def item(self, row: int) -> dict[str, Any]:
        """The metadata of the item at ``row`` (``item_id``, ``title``, ``image``, ``category``)."""
        if not 0 <= row < self.count:
            raise IndexError(f"row {row} out of range for an index of {self.count} items")
        with self._lock:
            if row in self._cache:
                self._cache.move_to_end(row)
                return self._cache[row]
        found = dict(self._fetch(f"row == {int(row)}"))
        if row not in found:
            raise TaommError(f"{self.path} holds no entity at row {row} of its {self.count}")
        return found[row]

    def row_of(self, item_id: str) -> int | None:
        """The row of ``item_id``, None when the index does not hold it."""
        if not isinstance(item_id, str):
            return None
        # JSON string escapes are Milvus's: an id with quotes or backslashes stays one literal
        found = self._fetch(f"item_id == {json.dumps(item_id, ensure_ascii=False)}")
        return found[0][0] if found else None

    def scan(self, fields: tuple[str, ...] = METADATA) -> Iterator[dict[str, Any]]:
        """Every item's ``fields`` (and ``row``), in row order, read in batches by row range."""
        for start in range(0, self.count, INSERT_BATCH):  # Milvus caps a query's results
            batch = self.client.query(self.collection, filter=f"row >= {start} and row < {start + INSERT_BATCH}",
                                      output_fields=["row", *fields])
            if len(batch) != min(INSERT_BATCH, self.count - start):
                raise TaommError(f"{self.path} holds {len(batch)} entities in rows {start}.. where "
                                 f"{min(INSERT_BATCH, self.count - start)} were exported")
            yield from sorted(batch, key=lambda e: int(e["row"]))

    def category_ids(self) -> np.ndarray | None:
        """Per row its category id (-1: none); None for an empty index."""
        if not self.count:
            return None
        return np.fromiter((int(e["category"]) for e in self.scan(("category",))), dtype=np.int64, count=self.count)

    def _fetch(self, condition: str) -> list[tuple[int, dict[str, Any]]]:
        """The items matching ``condition``, ``(row, metadata)``, also kept in the cache."""
        found = [(int(e["row"]), self._metadata(e))
                 for e in self.client.query(self.collection, filter=condition, output_fields=["row", *METADATA])]
        for row, meta in found:
            self._keep(row, meta)
        return found

    def _keep(self, row: int, meta: dict[str, Any]) -> None:
        if row < 0:
            return
        with self._lock:
            self._cache[row] = meta
            self._cache.move_to_end(row)
            while len(self._cache) > CACHED_ITEMS:
                self._cache.popitem(last=False)

    def _metadata(self, entity: dict[str, Any]) -> dict[str, Any]:
        """An entity as ``ItemIndex.items`` holds an item."""
        c = int(entity["category"])
        return {"item_id": entity["item_id"], "title": entity["title"], "image": entity["image"] or None,
                "category": None if c < 0 else {"id": c, "name": _name(self.classes, c)}}


class _Column(Sequence):
    """``MilvusIndex.items`` (``key`` None: an item's metadata) or ``item_ids`` (``key``
    "item_id"): row -> value, read on demand; negative rows and slices as a list's."""

    def __init__(self, index: MilvusIndex, key: str | None = None) -> None:
        self.index, self.key = index, key

    def __len__(self) -> int:
        return self.index.count

    def __getitem__(self, row: Any) -> Any:
        if isinstance(row, slice):
            return [self[r] for r in range(*row.indices(len(self)))]
        row = operator.index(row)
        meta = self.index.item(row + len(self) if row < 0 else row)
        return meta if self.key is None else meta[self.key]

    def __iter__(self) -> Iterator[Any]:
        if self.key is None:
            return (self.index._metadata(e) for e in self.index.scan())
        return (e[self.key] for e in self.index.scan((self.key,)))


class _Rows(Mapping):
    """``MilvusIndex.rows``: item id -> row, by a query."""

    def __init__(self, index: MilvusIndex) -> None:
        self.index = index

    def __len__(self) -> int:
        return self.index.count

    def __getitem__(self, item_id: Any) -> int:
        row = self.index.row_of(item_id)
        if row is None:
            raise KeyError(item_id)
        return row

    def __iter__(self) -> Iterator[str]:
        return iter(self.index.item_ids)
