"""Micro-batched search: the batcher alone, ``SearchEngine.search_many`` against one search at
a time, and the server (real uvicorn on loopback) batched against unbatched, full queue and
bursts. The catalog is test_search's tiny one (a random fp32 model, so answers are exact)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message

import numpy as np
import pytest
import test_search

from taomm.batching import MicroBatcher, Overloaded
from taomm.errors import TaommError
from taomm.search import SearchEngine, SearchRequest

# test_search's fixtures (built once more for this module): the tiny catalog and its engine
catalog, engine, serving = test_search.catalog, test_search.engine, test_search.serving
BAD_QUERIES = ["加微信领红包", "hello world", "<p> </p>", "!!!"]


# --- the batcher alone ---------------------------------------------------------------------

def test_batcher_gathers_calls_and_returns_each_its_own_answer() -> None:
    seen: list[list[int]] = []

    def run(items: list[int]) -> list[int | Exception]:
        seen.append(items)
        return [ValueError(f"odd {x}") if x % 2 else x * 10 for x in items]

    async def main() -> list[object]:
        batcher: MicroBatcher[int, int] = MicroBatcher(run, window_ms=50, max_batch=4, queue_size=64)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in range(10)), return_exceptions=True)
        finally:
            await batcher.close()

    answers = asyncio.run(main())
    assert [a if isinstance(a, int) else str(a) for a in answers] == \
        [0, "odd 1", 20, "odd 3", 40, "odd 5", 60, "odd 7", 80, "odd 9"]
    assert [len(b) for b in seen] == [4, 4, 2] and sorted(x for b in seen for x in b) == list(range(10))


def test_batcher_window_closes_a_partial_batch_and_a_full_queue_refuses() -> None:
    release = threading.Event()

    def run(items: list[int]) -> list[int]:
        release.wait(10)
        return items

    async def main() -> tuple[float, list[object]]:
        batcher: MicroBatcher[int, int] = MicroBatcher(run, window_ms=30, max_batch=8, queue_size=2)
        await batcher.start()
        try:
            release.set()
            t0 = time.perf_counter()
            assert await batcher.submit(7) == 7  # alone: the window runs out, the batch of one runs
            waited = time.perf_counter() - t0
            release.clear()
            first = asyncio.ensure_future(batcher.submit(1))  # taken by the worker, which then blocks
            await asyncio.sleep(0.1)
            rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(2, 6)]  # 2 wait, 2 refused
            await asyncio.sleep(0.05)
            release.set()
            return waited, await asyncio.gather(first, *rest, return_exceptions=True)
        finally:
            await batcher.close()

    waited, answers = asyncio.run(main())
    assert 0.025 <= waited < 2
    assert answers[:3] == [1, 2, 3] and all(isinstance(a, Overloaded) for a in answers[3:])


def test_batcher_workers_run_batches_at_the_same_time() -> None:
    running, most, lock = [0], [0], threading.Lock()

    def run(items: list[int]) -> list[int]:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return items

    async def main() -> list[int]:
        batcher: MicroBatcher[int, int] = MicroBatcher(run, window_ms=1, max_batch=2, queue_size=8, workers=2)
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in range(4)))
        finally:
            await batcher.close()

    assert asyncio.run(main()) == [0, 1, 2, 3] and most[0] == 2


# --- search_many -----------------------------------------------------------------------------

def catalog_queries(engine: SearchEngine, count: int) -> list[str]:
    """Distinct queries from the catalog's titles (a few words of each)."""
    titles = [it["title"] for it in engine.index.items]
    return list(dict.fromkeys(t[: 4 + i % 5] for i, t in enumerate(titles)))[:count]


def assert_same_hits(batched: list[dict], alone: list[dict]) -> None:
    assert [h["item_id"] for h in batched] == [h["item_id"] for h in alone]
    np.testing.assert_allclose([h["score"] for h in batched], [h["score"] for h in alone], rtol=0, atol=1e-5)


@pytest.mark.parametrize("rerank", [0, 8, None])
def test_search_many_equals_each_search_alone(engine: SearchEngine, rerank: int | None) -> None:
    queries = catalog_queries(engine, 24)
    requests = [SearchRequest(q, k=3 + i % 6, rerank=rerank) for i, q in enumerate(queries)]
    requests[5:5] = [SearchRequest(q, rerank=rerank) for q in BAD_QUERIES]
    requests.append(SearchRequest(queries[0], target="title"))
    results = engine.search_many(requests)
    assert len(results) == len(requests)
    for req, got in zip(requests, results, strict=True):
        try:
            hits, facets = engine.search_with_facets(req.query, req.k, req.rerank, req.target, req.category)
        except TaommError as exc:
            assert type(got) is type(exc) and str(got) == str(exc)
            continue
        assert not isinstance(got, Exception), got
        assert_same_hits([h.to_json() for h in got[0]], [h.to_json() for h in hits])
        assert got[1] == facets and len(hits) == req.k


def test_rerank_many_equals_one_rerank_a_query(engine: SearchEngine) -> None:
    rng = np.random.default_rng(0)
    pairs = [(engine.query_ids(q), rng.choice(len(engine.index), int(rng.integers(1, 12)), replace=False))
             for q in catalog_queries(engine, 10)]
    together = engine.rerank_many(pairs)
    for (ids, rows), logits in zip(pairs, together, strict=True):
        alone = engine.rerank_many([(ids, rows)])[0]
        assert logits.shape == (len(rows),)
        np.testing.assert_allclose(logits, alone, rtol=0, atol=1e-5)


class OverlapSpy:
    """A store that counts how many threads are inside its reads at once (each read takes
    a millisecond, so that overlapping callers do overlap)."""

    def __init__(self, store: object) -> None:
        self.store, self.inside, self.most, self.lock = store, 0, 0, threading.Lock()

    def read(self, fn, *args):
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        try:
            time.sleep(0.001)
            return fn(*args)
        finally:
            with self.lock:
                self.inside -= 1

    def __getitem__(self, ordinal: int):
        return self.read(self.store.__getitem__, ordinal)

    def ordinal(self, item_id: str) -> int:
        return self.read(self.store.ordinal, item_id)

    def __getattr__(self, name: str):
        return getattr(self.store, name)


def test_threads_reranking_at_once_read_the_store_one_at_a_time(catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    # The store reads through one LMDB transaction, which two threads must not use at once:
    # two server threads reranking together crashed the process (a segfault), now and then.
    import taomm.datasets.sharded as sharded

    spies: list[OverlapSpy] = []
    real_open = sharded.open_store
    monkeypatch.setattr(sharded, "open_store", lambda path: spies.append(OverlapSpy(real_open(path))) or spies[-1])
    engine = SearchEngine(catalog["index"], device="cpu", bf16=False)
    queries = catalog_queries(engine, 12)
    expected = {q: [h.item_id for h in engine.search(q, 5, 8)] for q in queries}
    wrong: list[str] = []

    def client(offset: int) -> None:
        for i in range(12):
            q = queries[(i + offset) % len(queries)]
            if [h.item_id for h in engine.search(q, 5, 8)] != expected[q]:
                wrong.append(q)
    threads = [threading.Thread(target=client, args=(c,)) for c in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(spies) == 1 and spies[0].most == 1 and wrong == []


# --- the server ------------------------------------------------------------------------------

def fetch(url: str) -> tuple[int, dict, Message]:
    """(status, JSON body, headers) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, json.loads(r.read()), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


def burst(urls: list[str], clients: int) -> list[tuple[int, dict, Message]]:
    """Every URL fetched by ``clients`` threads released together; answers in URL order."""
    answers: list[tuple[int, dict, Message] | None] = [None] * len(urls)
    start = threading.Barrier(clients)

    def client(c: int) -> None:
        start.wait()
        for i in range(c, len(urls), clients):
            answers[i] = fetch(urls[i])
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a is not None for a in answers)
    return answers  # type: ignore[return-value]


def search_url(base: str, query: str, **params: object) -> str:
    return f"{base}/api/search?" + urllib.parse.urlencode({"q": query, **params})


def test_batched_server_answers_as_the_unbatched_one(engine: SearchEngine) -> None:
    from taomm.serve import create_app

    queries = catalog_queries(engine, 30)
    asks = [(q, {"k": 5, "rerank": 8 if i % 2 else 0}) for i, q in enumerate(queries)]
    asks += [(q, {"k": 5}) for q in BAD_QUERIES] + [(queries[0], {"category": "no such category"})]
    asks += [(queries[1], {"k": 0}), ("裙" * 80, {})]  # refused before any model call
    batched_app = create_app(engine, batch_window_ms=20, max_batch=16, queue_size=256)
    with serving(batched_app) as base:
        batched = burst([search_url(base, q, **p) for q, p in asks], clients=len(asks))
    with serving(create_app(engine, max_batch=1)) as base:
        alone = [fetch(search_url(base, q, **p)) for q, p in asks]
    stats = batched_app.state.batcher.stats
    assert stats.largest > 1 and stats.batches < stats.calls  # the searches did run in batches
    for (query, _), (status, body, _), (status_alone, body_alone, _) in zip(asks, batched, alone, strict=True):
        assert status == status_alone, (query, body, body_alone)
        if status != 200:
            assert status == 422 and body == body_alone
            continue
        assert_same_hits(body["results"], body_alone["results"])
        assert body.get("facets") == body_alone.get("facets") and body["query"] == query
    assert sum(status == 200 for status, _, _ in batched) == len(queries)


def test_full_queue_answers_503_with_retry_after(engine: SearchEngine) -> None:
    from taomm.serve import create_app

    queries = catalog_queries(engine, 20)
    app = create_app(engine, batch_window_ms=20, max_batch=2, queue_size=1)
    with serving(app) as base:
        answers = burst([search_url(base, q, rerank=16) for q in queries * 3], clients=60)
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    for status, body, headers in answers:
        if status == 503:
            assert headers.get("Retry-After") == "1" and "busy" in body["error"]
    assert app.state.batcher.stats.refused == statuses.count(503)


def test_no_server_error_under_a_burst(engine: SearchEngine) -> None:
    from taomm.serve import create_app

    queries = catalog_queries(engine, 30)
    rng = np.random.default_rng(1)
    urls = []
    with serving(create_app(engine)) as base:  # the defaults
        for i in range(150):
            kind = i % 5
            if kind == 4:
                urls.append(search_url(base, BAD_QUERIES[i % len(BAD_QUERIES)], k=int(rng.integers(-2, 200))))
            else:
                urls.append(search_url(base, queries[i % len(queries)], k=int(rng.integers(1, 20)),
                                       rerank=int(rng.choice([0, 4, 16]))))
        answers = burst(urls, clients=50)
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 422}, statuses
    assert statuses.count(200) == 120  # every good search answered
