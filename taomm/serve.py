"""``taomm serve``: search and recommendations over HTTP (Starlette; run by uvicorn).

Endpoints:
- ``GET /`` the web page: a search box, category chips, a grid of result thumbnails with
  title and score; clicking an item shows its photo with the detector's regions, each
  labelled with its class and match score (the best highlighted), and its similar items;
- ``GET /api/search?q=QUERY&k=10[&rerank=K][&category=ID_OR_NAME]`` (listings; ITM rerank
  of K only when asked; only items of that category) -> ``{"query", "results": [{item_id,
  title, score, image_url}], "facets": [{category, name, count}]}`` (facets: the categories
  of the query's 100 nearest items, ``SearchEngine.facets``; absent for an index exported
  without categories);
- ``GET /api/explain?q=QUERY&item_id=ID`` -> the item's regions with boxes (0-1 fractions
  of the image), classes and match scores to the query, the best region and the pair's
  ITM score (``SearchEngine.explain``), plus ``image_url``;
- ``GET /api/recommend?item_id=ID&k=5`` -> ``{"item_id", "results": [...]}``;
- ``GET /images/{item_id}`` the item's image (only files under the index's image root);
- ``GET /health`` -> ``{"status": "ok", "items", "version"}``.

The model and the index are loaded once. Queries longer than ``max_query_chars`` and out
of range parameters get 422, queries that clean to nothing or look like spam 422 with the
reason, unknown items 404.

Searches are micro-batched (``taomm.batching``): concurrent searches wait in a queue of
``queue_size``, one worker gathers up to ``max_batch`` of them over ``batch_window_ms`` and
runs them in a worker thread as one ``SearchEngine.search_many`` (one text-encoder pass, one
ITM pass), each getting the answer it would get alone; a search that finds the queue full
gets 503 with Retry-After. ``max_batch`` 1 or a window of 0 turns batching off: each search
runs alone, as recommendations and explanations do, at most ``max_concurrency`` model calls
at a time (others wait their turn), each in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from taomm.batching import BATCH_WORKERS, MAX_BATCH, QUEUE_SIZE, WINDOW_MS, MicroBatcher, Overloaded
from taomm.errors import TaommError
from taomm.search import MAX_QUERY_CHARS, QueryError, SearchEngine, SearchRequest, SearchResult

log = logging.getLogger(__name__)
MAX_K, MAX_RERANK = 100, 64
RETRY_AFTER_S = 1  # what a 503 tells a client to wait


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _int_param(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be within [{low}, {high}]")
    return value


def _query_problem(query: str | None, max_query_chars: int) -> str | None:
    """Why ``?q=`` cannot be searched (a 422), or None."""
    if query is None or not query.strip():
        return "give a query: ?q=..."
    if len(query) > max_query_chars:
        return f"the query is longer than {max_query_chars} characters"
    return None


def _item_problem(item_id: str | None) -> str | None:
    """Why ``?item_id=`` cannot be looked up (a 422), or None."""
    if not item_id:
        return "give an item: ?item_id=..."
    if len(item_id) > 256:
        return "item_id is too long"
    return None


def _result_json(hit: Any) -> dict[str, Any]:
    data = hit.to_json()
    data["image_url"] = f"/images/{quote(hit.item_id, safe='')}" if hit.image else None
    del data["image"]
    return data


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("error serving %s", request.url.path)
    return _error(500, "internal error")


class _Endpoints:
    """The handlers of one app, sharing its engine, its limits and its gate on model calls."""

    def __init__(self, engine: SearchEngine, max_concurrency: int, max_query_chars: int,
                 batcher: MicroBatcher | None) -> None:
        self.engine, self.max_concurrency, self.max_query_chars = engine, max_concurrency, max_query_chars
        self.batcher = batcher
        self.gate: asyncio.Semaphore | None = None  # created inside the server's event loop

    def routes(self) -> list[Route]:
        return [Route("/", self.page), Route("/health", self.health), Route("/api/search", self.search),
                Route("/api/recommend", self.recommend), Route("/api/explain", self.explain),
                Route("/images/{item_id:path}", self.image)]

    async def call(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in a worker thread, at most ``max_concurrency`` at a time."""
        if self.gate is None:
            self.gate = asyncio.Semaphore(self.max_concurrency)
        async with self.gate:
            return await run_in_threadpool(fn, *args)

    async def run_search(self, req: SearchRequest) -> SearchResult:
        if self.batcher is None:
            return await self.call(self.engine.search_with_facets, req.query, req.k, req.rerank, req.target,
                                   req.category)
        return await self.batcher.submit(req)

    async def page(self, request: Request) -> Response:
        return HTMLResponse(PAGE.replace("__MAX__", str(self.max_query_chars)))

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "items": len(self.engine.index),
                             "version": self.engine.index.manifest.get("version")})

    async def search(self, request: Request) -> Response:
        query = request.query_params.get("q")
        problem = _query_problem(query, self.max_query_chars)
        if problem is not None:
            return _error(422, problem)
        try:
            k = _int_param(request, "k", 10, 1, MAX_K)
            rerank = _int_param(request, "rerank", None, 0, MAX_RERANK)
        except ValueError as exc:
            return _error(422, str(exc))
        category = request.query_params.get("category") or None
        if category is not None and len(category) > 128:
            return _error(422, "category is too long")
        try:
            hits, facets = await self.run_search(SearchRequest(query, k, rerank, "item", category))
        except Overloaded as exc:
            return JSONResponse({"error": f"the server is busy ({exc}): try again shortly"}, status_code=503,
                                headers={"Retry-After": str(RETRY_AFTER_S)})
        except QueryError as exc:
            return _error(422, str(exc))
        except TaommError as exc:
            return _error(400, str(exc))
        body: dict[str, Any] = {"query": query, "results": [_result_json(h) for h in hits]}
        if facets is not None:  # an index exported before categories has none
            body["facets"] = facets
        return JSONResponse(body)

    async def explain(self, request: Request) -> Response:
        query, item_id = request.query_params.get("q"), request.query_params.get("item_id")
        problem = _query_problem(query, self.max_query_chars) or _item_problem(item_id)
        if problem is not None:
            return _error(422, problem)
        row = self.engine.index.rows.get(item_id)
        if row is None:
            return _error(404, f"unknown item id {item_id!r}")
        try:
            data = await self.call(self.engine.explain, query, item_id)
        except QueryError as exc:
            return _error(422, str(exc))
        except TaommError as exc:
            return _error(400, str(exc))
        known = self.engine.image_path(row) is not None
        data["image_url"] = f"/images/{quote(item_id, safe='')}" if known else None
        return JSONResponse(data)

    async def recommend(self, request: Request) -> Response:
        item_id = request.query_params.get("item_id")
        problem = _item_problem(item_id)
        if problem is not None:
            return _error(422, problem)
        try:
            k = _int_param(request, "k", 5, 1, MAX_K)
        except ValueError as exc:
            return _error(422, str(exc))
        if item_id not in self.engine.index.rows:
            return _error(404, f"unknown item id {item_id!r}")
        hits = await self.call(self.engine.recommend, item_id, k)
        return JSONResponse({"item_id": item_id, "results": [_result_json(h) for h in hits]})

    async def image(self, request: Request) -> Response:
        row = self.engine.index.rows.get(request.path_params["item_id"])
        path = self.engine.image_path(row) if row is not None else None
        if path is None:
            return _error(404, "no image for this item")
        media = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=3600"})


def create_app(engine: SearchEngine, max_concurrency: int = 2, max_query_chars: int = MAX_QUERY_CHARS,
               batch_window_ms: float = WINDOW_MS, max_batch: int = MAX_BATCH,
               queue_size: int = QUEUE_SIZE, batch_workers: int = BATCH_WORKERS) -> Starlette:
    """The Starlette app of ``taomm serve`` over ``engine`` (endpoints: the module docstring)."""
    batching = max_batch > 1 and batch_window_ms > 0
    batcher = MicroBatcher(engine.search_many, batch_window_ms, max_batch, queue_size, batch_workers) if batching \
        else None
    endpoints = _Endpoints(engine, max_concurrency, max_query_chars, batcher)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if batcher is not None:
            await batcher.start()
        yield
        if batcher is not None:
            await batcher.close()

    app = Starlette(routes=endpoints.routes(), exception_handlers={Exception: _server_error}, lifespan=lifespan)
    app.state.batcher = batcher  # None when batching is off; its stats tell how full batches ran
    return app


PAGE = """<!doctype html>
<html lang="zh">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>taomm search</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
  form { display: flex; gap: .5rem; margin-bottom: 1rem; }
  input { flex: 1; font-size: 1.1rem; padding: .4rem .6rem; }
  button { font-size: 1.1rem; padding: .4rem 1rem; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 1rem; }
  .card { border: 1px solid #ddd; border-radius: 6px; padding: .5rem; cursor: pointer; background: #fff; }
  .card:hover { border-color: #e4393c; }
  .card img { width: 100%; aspect-ratio: 1; object-fit: contain; background: #f6f6f6; }
  .title { font-size: .85rem; margin: .3rem 0; }
  .score { font-size: .75rem; color: #888; }
  #message { color: #b00; min-height: 1.2rem; }
  h2 { font-size: 1rem; margin-top: 2rem; }
  #facets { display: flex; flex-wrap: wrap; gap: .4rem; margin-bottom: .8rem; }
  .chip { font-size: .8rem; padding: .2rem .7rem; border: 1px solid #ccc; border-radius: 999px;
          background: #fafafa; cursor: pointer; }
  .chip.active { background: #e4393c; border-color: #e4393c; color: #fff; }
  .photo { position: relative; display: inline-block; line-height: 0; }
  .photo img, .photo .blank { display: block; width: 360px; max-width: 90vw; height: auto; background: #f6f6f6; }
  .region { position: absolute; box-sizing: border-box; border: 2px solid rgba(0, 110, 230, .85); }
  .region.best { border: 3px solid #e4393c; box-shadow: 0 0 0 2px rgba(228, 57, 60, .35); z-index: 1; }
  .region .label { position: absolute; left: 0; top: 0; font-size: .7rem; line-height: 1.2; padding: 1px 3px;
                   white-space: nowrap; color: #fff; background: rgba(0, 110, 230, .85); }
  .region.best .label { background: #e4393c; }
  #explain-regions { font-size: .85rem; }
  #explain-regions .best { font-weight: bold; color: #e4393c; }
</style>
</head>
<body>
<h1>taomm</h1>
<form id="search-form">
  <input id="query" name="q" maxlength="__MAX__" placeholder="波点荷叶边裙" autofocus>
  <button type="submit">搜索</button>
</form>
<div id="message"></div>
<div id="facets"></div>
<div id="results" class="grid"></div>
<section id="explain" hidden>
  <h2 id="explain-title"></h2>
  <div id="explain-summary" class="score"></div>
  <div id="explain-photo" class="photo"></div>
  <ol id="explain-regions" start="0"></ol>
</section>
<h2 id="similar-title" hidden>相似商品 / similar items</h2>
<div id="similar" class="grid"></div>
<script>
const $ = (id) => document.getElementById(id);
function card(hit) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.itemId = hit.item_id;
  if (hit.image_url) {
    const img = document.createElement("img");
    img.className = "result-img";
    img.src = hit.image_url;
    img.alt = hit.title;
    div.appendChild(img);
  }
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = hit.title;
  const score = document.createElement("div");
  score.className = "score";
  score.textContent = hit.item_id + " · " + hit.score.toFixed(3);
  div.append(title, score);
  div.addEventListener("click", () => openItem(hit.item_id));
  return div;
}
let current = {q: null, category: null};
let explainToken = 0;
function openItem(itemId) {
  explain(itemId);
  similar(itemId);
}
function chip(text, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}
function renderFacets(facets) {
  if (!facets || !facets.length) { $("facets").replaceChildren(); return; }
  const chips = facets.map((f) => {
    const active = current.category !== null && String(current.category) === String(f.category);
    const c = chip(f.name + " (" + f.count + ")", active ? "chip active" : "chip", () => search(current.q, f.category));
    c.dataset.category = f.category;
    return c;
  });
  if (current.category !== null) chips.unshift(chip("全部 / all", "chip clear", () => search(current.q, null)));
  $("facets").replaceChildren(...chips);
}
async function explain(itemId) {
  if (!current.q) return;
  const token = ++explainToken;  // a later click wins over a slower earlier answer
  try {
    const data = await getJSON("/api/explain?q=" + encodeURIComponent(current.q) +
                               "&item_id=" + encodeURIComponent(itemId));
    if (token === explainToken) renderExplain(data);
  } catch (e) { $("message").textContent = e.message; }
}
function renderExplain(data) {
  let base;
  if (data.image_url) {
    base = document.createElement("img");
    base.className = "explain-img";
    base.src = data.image_url;
    base.alt = data.title;
  } else {  // no photo to show: the regions over a blank of its shape
    base = document.createElement("div");
    base.className = "blank";
    base.style.aspectRatio = data.width + " / " + data.height;
  }
  const name = (r) => r.class_name || "unknown";
  const boxes = data.regions.map((r) => {
    const div = document.createElement("div");
    div.className = r.index === data.best_region ? "region best" : "region";
    div.dataset.index = r.index;
    const [x1, y1, x2, y2] = r.box;  // fractions of the photo's width and height
    Object.assign(div.style, {left: 100 * x1 + "%", top: 100 * y1 + "%",
                              width: 100 * (x2 - x1) + "%", height: 100 * (y2 - y1) + "%"});
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = name(r) + " " + r.score.toFixed(3);
    div.title = name(r) + " · match " + r.score.toFixed(3) + " · detector " + r.confidence.toFixed(2);
    div.appendChild(label);
    return div;
  });
  $("explain-photo").replaceChildren(base, ...boxes);
  $("explain-regions").replaceChildren(...data.regions.map((r) => {
    const li = document.createElement("li");
    if (r.index === data.best_region) li.className = "best";
    li.textContent = name(r) + " · match " + r.score.toFixed(3) + " · detector " + r.confidence.toFixed(2);
    return li;
  }));
  $("explain-title").textContent = data.title;
  $("explain-summary").textContent = data.item_id + " · ITM " + data.itm_score.toFixed(3) +
    (data.category ? " · " + data.category.name : "") + " · " + data.regions.length + " regions";
  $("explain").hidden = false;
  $("explain").scrollIntoView({behavior: "smooth"});
}
async function getJSON(url) {
  const r = await fetch(url);
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}
async function search(q, category = null) {
  current = {q, category};
  $("message").textContent = "";
  $("results").replaceChildren();
  $("similar").replaceChildren();
  $("similar-title").hidden = true;
  $("explain").hidden = true;
  try {
    const only = category === null ? "" : "&category=" + encodeURIComponent(category);
    const data = await getJSON("/api/search?q=" + encodeURIComponent(q) + "&k=20" + only);
    renderFacets(data.facets);
    if (!data.results.length) $("message").textContent = "no results";
    $("results").replaceChildren(...data.results.map(card));
  } catch (e) { $("message").textContent = e.message; }
}
async function similar(itemId) {
  try {
    const data = await getJSON("/api/recommend?item_id=" + encodeURIComponent(itemId) + "&k=5");
    $("similar-title").hidden = false;
    $("similar").replaceChildren(...data.results.map(card));
    $("similar-title").scrollIntoView({behavior: "smooth"});
  } catch (e) { $("message").textContent = e.message; }
}
$("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search($("query").value); });
const initial = new URLSearchParams(location.search).get("q");
if (initial) { $("query").value = initial; search(initial); }
</script>
</body>
</html>
"""
