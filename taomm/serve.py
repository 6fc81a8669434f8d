"""``taomm serve``: search and recommendations over HTTP (Starlette; run by uvicorn).

Endpoints:
- ``GET /`` the web page: a search box, a grid of result thumbnails with title and score;
  clicking an item shows its similar items;
- ``GET /api/search?q=QUERY&k=10[&rerank=K]`` (listings; ITM rerank of K only when asked) ->
  ``{"query", "results": [{item_id, title, score, image_url}]}``;
- ``GET /api/recommend?item_id=ID&k=5`` -> ``{"item_id", "results": [...]}``;
- ``GET /images/{item_id}`` the item's image (only files under the index's image root);
- ``GET /health`` -> ``{"status": "ok", "items", "version"}``.

The model and the index are loaded once. Queries longer than ``max_query_chars`` and out
of range parameters get 422, queries that clean to nothing or look like spam 422 with the
reason, unknown items 404; at most ``max_concurrency`` model calls run at a time (others
wait their turn), each in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from taomm.errors import TaommError
from taomm.search import MAX_QUERY_CHARS, QueryError, SearchEngine

log = logging.getLogger(__name__)
MAX_K, MAX_RERANK = 100, 64


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


def create_app(engine: SearchEngine, max_concurrency: int = 2, max_query_chars: int = MAX_QUERY_CHARS) -> Starlette:
    gate: dict[str, asyncio.Semaphore] = {}

    async def call(fn: Any, *args: Any) -> Any:
        if "sem" not in gate:  # created inside the server's event loop
            gate["sem"] = asyncio.Semaphore(max_concurrency)
        async with gate["sem"]:
            return await run_in_threadpool(fn, *args)

    def result_json(hit: Any) -> dict[str, Any]:
        data = hit.to_json()
        data["image_url"] = f"/images/{quote(hit.item_id, safe='')}" if hit.image else None
        del data["image"]
        return data

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE.replace("__MAX__", str(max_query_chars)))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "items": len(engine.index),
                             "version": engine.index.manifest.get("version")})

    async def search(request: Request) -> Response:
        query = request.query_params.get("q")
        if query is None or not query.strip():
            return _error(422, "give a query: ?q=...")
        if len(query) > max_query_chars:
            return _error(422, f"the query is longer than {max_query_chars} characters")
        try:
            k = _int_param(request, "k", 10, 1, MAX_K)
            rerank = _int_param(request, "rerank", None, 0, MAX_RERANK)
        except ValueError as exc:
            return _error(422, str(exc))
        try:
            hits = await call(engine.search, query, k, rerank)
        except QueryError as exc:
            return _error(422, str(exc))
        except TaommError as exc:
            return _error(400, str(exc))
        return JSONResponse({"query": query, "results": [result_json(h) for h in hits]})

    async def recommend(request: Request) -> Response:
        item_id = request.query_params.get("item_id")
        if not item_id:
            return _error(422, "give an item: ?item_id=...")
        if len(item_id) > 256:
            return _error(422, "item_id is too long")
        try:
            k = _int_param(request, "k", 5, 1, MAX_K)
        except ValueError as exc:
            return _error(422, str(exc))
        if item_id not in engine.index.rows:
            return _error(404, f"unknown item id {item_id!r}")
        hits = await call(engine.recommend, item_id, k)
        return JSONResponse({"item_id": item_id, "results": [result_json(h) for h in hits]})

    async def image(request: Request) -> Response:
        row = engine.index.rows.get(request.path_params["item_id"])
        path = engine.image_path(row) if row is not None else None
        if path is None:
            return _error(404, "no image for this item")
        media = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=3600"})

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("error serving %s", request.url.path)
        return _error(500, "internal error")

    routes = [Route("/", page), Route("/health", health), Route("/api/search", search),
              Route("/api/recommend", recommend), Route("/images/{item_id:path}", image)]
    return Starlette(routes=routes, exception_handlers={Exception: server_error})


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
</style>
</head>
<body>
<h1>taomm</h1>
<form id="search-form">
  <input id="query" name="q" maxlength="__MAX__" placeholder="波点荷叶边裙" autofocus>
  <button type="submit">搜索</button>
</form>
<div id="message"></div>
<div id="results" class="grid"></div>
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
  div.addEventListener("click", () => similar(hit.item_id));
  return div;
}
async function getJSON(url) {
  const r = await fetch(url);
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}
async function search(q) {
  $("message").textContent = "";
  $("results").replaceChildren();
  $("similar").replaceChildren();
  $("similar-title").hidden = true;
  try {
    const data = await getJSON("/api/search?q=" + encodeURIComponent(q) + "&k=20");
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
