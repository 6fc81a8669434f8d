"""TF-IDF hard-negative mining: parity with scikit-learn and a brute-force reference, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import build_store
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.datasets.store import FeatureStore
from taomm.text.mining import (
    JOIN_ARRAYS,
    image_ids,
    join_arrays,
    join_arrays_of_counts,
    mine_hard_negatives,
    term_counts,
    tfidf_from_counts,
    tfidf_matrix,
    tokens,
)

sklearn_text = pytest.importorskip("sklearn.feature_extraction.text")

WORDS = ["红色", "Red", "red", "裙", "新款", "包邮", " ", "", "女", "2020"]


def brute_force(docs, groups, top_k: int, max_sim: float) -> tuple[np.ndarray, np.ndarray]:
    """Dense cosine (float64, rounded to float32), per-row sort: sim desc, then index asc."""
    x = tfidf_matrix(docs).toarray()
    sims = (x @ x.T).astype(np.float32)
    groups = np.asarray(groups)
    n = len(docs)
    indices, values = np.full((n, top_k), -1), np.zeros((n, top_k), np.float32)
    for i in range(n):
        ok = (sims[i] > 0) & (sims[i] < np.float32(max_sim)) & (groups != groups[i])
        j = np.flatnonzero(ok)
        j = j[np.lexsort((j, -sims[i, j]))][:top_k]
        indices[i, :j.size], values[i, :j.size] = j, sims[i, j]
    return indices, values


def random_docs(rng: np.random.Generator, n: int, vocab: int) -> list[list[str]]:
    return [[str(w) for w in rng.choice(WORDS[:vocab], rng.integers(0, 6))] for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_tfidf_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    docs = [[f"w{w}" for w in rng.integers(0, 40, rng.integers(1, 15))] for _ in range(60)] + \
        random_docs(rng, 20, len(WORDS))
    docs.append(["only", "ONLY"])
    ref = sklearn_text.TfidfVectorizer(analyzer=lambda d: d).fit_transform([tokens(d) for d in docs])
    np.testing.assert_allclose(tfidf_matrix(docs).toarray(), ref.toarray(), rtol=1e-12, atol=1e-15)


@settings(max_examples=100, deadline=None)
@given(docs=st.lists(st.lists(st.sampled_from([*WORDS, "RED ", "\t", "女 "]), max_size=6), max_size=30),
       cuts=st.lists(st.integers(0, 30), max_size=4))
def test_shares_counted_apart_merge_into_the_same_matrix(docs: list[list[str]], cuts: list[int]) -> None:
    # Ranks count their shares of the captions apart (each its own vocabulary, blanks and case
    # seen only there): merged, the matrix and the join arrays are the whole run's, bit for bit.
    edges = [0, *sorted(min(c, len(docs)) for c in cuts), len(docs)]
    parts = [term_counts(docs[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    whole, merged = tfidf_matrix(docs), tfidf_from_counts(parts)
    assert whole.shape == merged.shape == (len(docs), len(set(t for d in docs for t in tokens(d))))
    np.testing.assert_array_equal(merged.indptr, whole.indptr)
    np.testing.assert_array_equal(merged.indices, whole.indices)
    assert merged.data.tobytes() == whole.data.tobytes()
    labels = [f"photo{i // 2}" for i in range(len(docs))]
    want, got = join_arrays(docs, np.arange(len(docs)) // 2), join_arrays_of_counts(parts, labels)
    for name in JOIN_ARRAYS:
        assert got[name].dtype == want[name].dtype and got[name].tobytes() == want[name].tobytes(), name


def test_term_counts_strip_case_and_blanks_once_per_word() -> None:
    counts = term_counts([["Red ", "红色", " ", "red"], [], ["", "\t"], ["RED", "女"]])
    assert counts.terms == ["red", "女", "红色"]
    assert counts.indptr.tolist() == [0, 3, 3, 3, 5]
    assert counts.cols.tolist() == [0, 2, 0, 0, 1]


def test_image_ids_number_labels_in_order_and_keep_ints() -> None:
    assert image_ids(["b", "a", "b", "c"], 4).tolist() == [0, 1, 0, 2]
    assert image_ids(np.array([7, 3, 7]), 3).tolist() == [7, 3, 7]
    assert image_ids(None, 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"groups has shape \(2,\), expected \(3,\)"):
        image_ids(["a", "b"], 3)


@settings(max_examples=150, deadline=None)
# A tie at the k-th place whose float32 rounds up: the pruning bound must not drop it.
@example(seed=3676163, n=13, vocab=4, top_k=1, max_sim=0.3, chunk=1, n_common=1, grouped=False)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), vocab=st.integers(1, len(WORDS)),
       top_k=st.integers(1, 8), max_sim=st.sampled_from([0.5, 0.3, 0.8, 1.01]),
       chunk=st.integers(1, 16), n_common=st.integers(0, 6), grouped=st.booleans())
def test_mining_matches_brute_force(seed, n, vocab, top_k, max_sim, chunk, n_common, grouped) -> None:
    rng = np.random.default_rng(seed)
    docs = random_docs(rng, n, vocab)
    groups = rng.integers(0, max(1, n // 3), n) if grouped else np.arange(n)
    got = mine_hard_negatives(docs, groups, top_k, max_sim, chunk_size=chunk, n_common=n_common)
    want = brute_force(docs, groups, top_k, max_sim)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_larger_corpus_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    docs = [[f"w{w}" for w in rng.zipf(1.3, rng.integers(1, 12)) % 300] for _ in range(600)]
    groups = np.arange(600) // 2
    got = mine_hard_negatives(docs, groups, top_k=30, chunk_size=64, n_common=16)
    want = brute_force(docs, groups, 30, 0.5)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_edge_cases() -> None:
    idx, sims = mine_hard_negatives([], top_k=3)
    assert idx.shape == (0, 3) and sims.shape == (0, 3)
    idx, _ = mine_hard_negatives([["a"]], top_k=3)
    np.testing.assert_array_equal(idx, [[-1, -1, -1]])
    idx, _ = mine_hard_negatives([[], ["a"], [" "], ["a", "b"]], top_k=2, max_sim=0.9)
    np.testing.assert_array_equal(idx[[0, 2]], -1)  # empty documents have no neighbours
    np.testing.assert_array_equal(idx[1], [3, -1])
    idx, sims = mine_hard_negatives([["新款", "裙"]] * 5, top_k=2)  # all sims 1.0 >= 0.5
    assert (idx == -1).all() and (sims == 0).all()
    with pytest.raises(ValueError):
        mine_hard_negatives([["a"], ["b"]], groups=[0])


def test_progress_reports_every_row() -> None:
    seen: list[int] = []
    mine_hard_negatives([[f"w{i}", "b"] for i in range(10)], chunk_size=3, on_progress=seen.append)
    assert seen == [3, 3, 3, 1]
    seen.clear()  # captions with one TF-IDF row are ranked once, and reported together
    mine_hard_negatives([["a", "b"]] * 7 + [["c"]] * 3, chunk_size=1, on_progress=seen.append)
    assert seen == [7, 3]


@pytest.mark.parametrize("max_sim", [0.5, 1.01])
def test_repeated_captions_and_large_groups_match_brute_force(max_sim: float) -> None:
    # Many copies of a few captions (one TF-IDF row each), a group holding most copies of
    # one of them: a caption's own group must not crowd its negatives out of the ranking.
    rng = np.random.default_rng(3)
    bases = [["red", "dress", "silk"], ["red", "dress"], ["blue", "dress", "silk", "long"], ["silk"], ["coat"]]
    docs = [list(bases[b]) for b in rng.integers(0, len(bases), 120)] + random_docs(rng, 30, 6)
    groups = np.where(np.arange(150) < 60, 0, np.arange(150))
    got = mine_hard_negatives(docs, groups, top_k=5, max_sim=max_sim, chunk_size=2)
    want = brute_force(docs, groups, 5, max_sim)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    return CliRunner()


def test_cli_captions_writes_jsonl(cli: CliRunner, tmp_path: Path) -> None:
    lines = ["红色连衣裙新款", "", "蓝色连衣裙新款包邮", "红色半身裙", "红色连衣裙新款"]
    (tmp_path / "caps.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli.invoke(app, ["mine-negatives", "--captions", "caps.txt", "--out", "negs.jsonl",
                              "--top-k", "3", "--max-sim", "0.9"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "negs.jsonl").read_text("utf-8").splitlines()]
    assert [r["index"] for r in rows] == list(range(len(lines)))
    assert rows[1]["negatives"] == []
    from taomm.text.segment import segment

    want_idx, want_sim = mine_hard_negatives([segment(t) for t in lines], top_k=3, max_sim=0.9)
    for row, idx, sim in zip(rows, want_idx, want_sim, strict=True):
        assert [j for j, _ in row["negatives"]] == [j for j in idx.tolist() if j >= 0]
        assert [s for _, s in row["negatives"]] == [round(float(s), 6) for s in sim[idx >= 0]]
        sims = [s for _, s in row["negatives"]]
        assert sims == sorted(sims, reverse=True) and all(0 < s < 0.9 for s in sims)


def test_cli_captions_usage_errors(cli: CliRunner) -> None:
    result = cli.invoke(app, ["mine-negatives", "--captions", "caps.txt"])
    assert result.exit_code == 2 and "--out" in result.output
    result = cli.invoke(app, ["mine-negatives", "--captions", "missing.txt", "--out", "o.jsonl"])
    assert result.exit_code != 0
    assert result.output.strip().count("\n") == 0 and "missing.txt" in result.output


def test_cli_store_mode(cli: CliRunner, tmp_path: Path) -> None:
    path = build_store(tmp_path / "store", 40)
    result = cli.invoke(app, ["mine-negatives", "--store", str(path), "--top-k", "5", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    with FeatureStore(path) as fs:
        docs = [item.words for item in fs]
        want, _ = mine_hard_negatives(docs, top_k=5)
        for i in range(len(fs)):
            np.testing.assert_array_equal(fs.negatives(i), want[i][want[i] >= 0])
        assert fs.meta.negatives == len(fs)
    found = (want >= 0).sum(axis=1)
    assert summary["items"] == 40
    assert summary["mean_negatives"] == round(float(found.mean()), 3)
    assert summary["items_without_negatives"] == int((found == 0).sum())
    assert summary["seconds"] >= 0


def test_cli_store_mode_needs_a_store_outside_a_workspace(cli: CliRunner) -> None:
    result = cli.invoke(app, ["mine-negatives"])
    assert result.exit_code == 2


def test_help_shows_the_jsonl_line_as_written(cli: CliRunner) -> None:
    result = cli.invoke(app, ["mine-negatives", "--help"])
    assert result.exit_code == 0
    assert '"negatives": [[j, sim], ...]}' in result.output  # not eaten as rich markup
