"""TF-IDF hard negatives: for each caption, the most similar captions of other images.

Definition (DESIGN.md section 7, exact, no approximation):

- Tokens: a caption's words, stripped and lower-cased; empty and whitespace-only words are dropped.
- TF-IDF as scikit-learn's ``TfidfVectorizer`` defaults: raw counts, smooth idf
  ``ln((1 + n) / (1 + df)) + 1``, rows l2-normalised (float64).
- Similarity: cosine (a dot product of rows), rounded to float32 before it is compared,
  so that mathematically equal similarities tie and a similarity of exactly ``max_sim``
  is excluded.
- Negatives of caption i: the ``top_k`` captions j of another group (image) with
  ``0 < sim < max_sim``, by similarity descending, ties by smaller j first.

How: an inverted-index join compiled with numba, with a bound that skips most of the
work on frequent words. Captions with the same TF-IDF row (listings repeat titles) are
joined once, as one "vector": the query side ranks each vector once for all of its
captions, the index side holds each vector once and expands it into its captions, in index
order, when it makes a ranking. A vector's ranking keeps its best ``top_k + g`` captions of
any group, g the size of its captions' largest group, so that each caption still has
``top_k`` once its own group is left out. The vocabulary is split into the ``n_common`` most
frequent terms ("common") and the rest ("rare"). For each vector i:

1. The postings of its rare terms accumulate, in a per-thread buffer, the rare part of the
   dot product with every vector j sharing a rare word; the common part is added by
   merging i's few common terms with j's sorted row. That is the exact similarity; the
   best ones are kept by insertion, and the last kept is a lower bound L of the final one.
2. A vector sharing only common words has ``sim = c_i . c_j <= |c_i| |c_j|``
   (Cauchy-Schwarz on the common parts). Vectors sorted by ``|c_j|`` are scanned while
   that bound can still reach L (L rising as better ones are found); when that scan would
   be longer than the common terms' postings, the postings are accumulated instead.

Similarities are sums over the shared terms in column order, rare part then common part,
so sim(i, j) == sim(j, i) bit for bit. Nothing is ever N x N: memory is the matrix, its
transpose and a few length-V buffers per thread (V vectors); vectors are spread over the
CPU's cores. The kernels are compiled once per machine and kept in numba's cache.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import NamedTuple

import numba
import numpy as np
import scipy.sparse as sp


def tokens(words: Sequence[str]) -> list[str]:
    """The mining tokens of a caption: its words stripped (English words carry their leading
    space) and lower-cased, blank words dropped."""
    return [token for token in tokens_or_blank(words) if token]


class TermCounts(NamedTuple):
    """The terms of some captions, counted before the whole vocabulary is known: ``terms``
    sorted, and each caption's term ids (CSR: caption i's in ``cols[indptr[i]:indptr[i + 1]]``,
    indices into ``terms``, a term as many times as it occurs). Shares of the captions counted
    apart (in processes of their own) merge into one matrix: :func:`tfidf_from_counts`."""

    terms: list[str]
    indptr: np.ndarray
    cols: np.ndarray


def term_counts(docs: Sequence[Sequence[str]]) -> TermCounts:
    """The :func:`tokens` of pre-tokenised documents, counted: each distinct word is stripped and
    lower-cased once, then every word is one dictionary look-up."""
    flat = list(chain.from_iterable(docs))
    words = sorted(set(flat))
    token_of = tokens_or_blank(words)
    terms = sorted(set(token_of) - {""})
    term_id = {term: i for i, term in enumerate(terms)}
    word_id = {word: term_id.get(token, -1) for word, token in zip(words, token_of, strict=True)}
    ids = np.fromiter(map(word_id.__getitem__, flat), dtype=np.int64, count=len(flat))
    doc_of = np.repeat(np.arange(len(docs)), np.fromiter(map(len, docs), dtype=np.int64, count=len(docs)))
    kept = ids >= 0
    indptr = np.concatenate([[0], np.cumsum(np.bincount(doc_of[kept], minlength=len(docs)))]).astype(np.int64)
    return TermCounts(terms, indptr, ids[kept])


def tokens_or_blank(words: Sequence[str]) -> list[str]:
    """:func:`tokens` word for word: a blank word's token is ``""``."""
    return [w.strip().lower() if w and not w.isspace() else "" for w in words]


def tfidf_matrix(docs: Sequence[Sequence[str]]) -> sp.csr_matrix:
    """TF-IDF rows (float64, l2-normalised, CSR) of pre-tokenised documents.

    Columns follow the sorted vocabulary, so the matrix equals scikit-learn's
    ``TfidfVectorizer(analyzer=lambda d: d).fit_transform`` on the same tokens.
    """
    return tfidf_from_counts([term_counts(docs)])


def tfidf_from_counts(parts: Sequence[TermCounts]) -> sp.csr_matrix:
    """:func:`tfidf_matrix` of the captions whose shares, in order, ``parts`` counted: the same
    matrix, bit for bit, however the captions were split."""
    terms = sorted(set().union(*(part.terms for part in parts)))
    column = {term: i for i, term in enumerate(terms)}
    cols = [np.fromiter(map(column.__getitem__, part.terms), dtype=np.int64, count=len(part.terms))[part.cols]
            for part in parts]
    ends = np.cumsum([0] + [len(part.cols) for part in parts])
    indptr = np.concatenate([[0], *(part.indptr[1:] + end for part, end in zip(parts, ends[:-1], strict=True))])
    x = sp.csr_matrix((np.ones(int(ends[-1])), np.concatenate([np.zeros(0, np.int64), *cols]),
                       indptr.astype(np.int64)), shape=(len(indptr) - 1, len(terms)))
    x.sum_duplicates()  # raw counts; also sorts the indices of every row
    n = x.shape[0]
    df = np.bincount(x.indices, minlength=x.shape[1])
    x.data *= (np.log((1.0 + n) / (1.0 + df)) + 1.0)[x.indices]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x.data /= np.repeat(np.where(norms > 0, norms, 1.0), np.diff(x.indptr))
    return x


def mine_hard_negatives(
    docs: Sequence[Sequence[str]],
    groups: Groups = None,
    top_k: int = 30,
    max_sim: float = 0.5,
    chunk_size: int = 256,
    n_common: int = 32,
    on_progress: Callable[[int], None] | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Hard negatives of every caption: ``(indices int64 [N, top_k], sims float32 [N, top_k])``.

    ``groups`` holds one image per caption, an id or any label (default: every caption its own image);
    captions of the same image are never negatives of each other. Rows with fewer than
    ``top_k`` negatives are padded with index -1 and similarity 0. ``on_progress(n)`` is
    called after every chunk of rows with the number of rows it finished. ``n_common`` (how
    many frequent terms take the bounded path) and ``threads`` (default: the CPU's cores)
    only change the speed, never the result.
    """
    if top_k < 0 or chunk_size < 1 or n_common < 0:
        raise ValueError("top_k and n_common must be >= 0, chunk_size >= 1")
    arrays = join_arrays(docs, groups, n_common)
    return mine_rows(arrays, range(len(arrays["groups"])), top_k, max_sim, chunk_size, on_progress, threads)


# One image per caption: int ids or labels (a photo's key); None: each caption its own.
Groups = Sequence[Hashable] | np.ndarray | None
# What the join kernel reads, by name: the distinct TF-IDF rows ("vectors", see _join_inputs),
# then the vector of every caption, the captions of every vector (CSR, ascending), and the
# group of every caption and its size.
JOIN_ARRAYS = ("indptr", "indices", "data", "t_indptr", "t_indices", "t_data", "common", "c_indptr", "c_indices",
               "c_data", "cnorm", "by_cnorm", "sorted_cnorm", "vector", "m_indptr", "members", "groups",
               "group_size")


def join_arrays(docs: Sequence[Sequence[str]], groups: Groups = None, n_common: int = 32) -> dict[str, np.ndarray]:
    """Everything :func:`mine_rows` joins over, by name (``JOIN_ARRAYS``): plain arrays, so that
    they can be built once, saved as ``.npy`` and memory-mapped by other processes.

    Captions with the same TF-IDF row (the same words, counted; listings repeat titles) share
    one "vector": the join runs over distinct vectors, each caption of a vector taking its
    place in the ranking by its own index."""
    return join_arrays_of_counts([term_counts(docs)], groups, n_common)


def join_arrays_of_counts(parts: Sequence[TermCounts], groups: Groups = None,
                          n_common: int = 32) -> dict[str, np.ndarray]:
    """:func:`join_arrays` of the captions whose shares, in order, ``parts`` counted
    (:func:`term_counts`, each in a process of its own): the same arrays."""
    x = sp.csr_matrix(tfidf_from_counts(parts), dtype=np.float64)
    group_ids = image_ids(groups, x.shape[0])
    x.sort_indices()  # the same term order in both rows of a pair: symmetric sums
    vector = _distinct_rows(x.indptr.astype(np.int64), x.indices.astype(np.int64), x.data)
    members = np.argsort(vector, kind="stable").astype(np.int64)  # by vector, then caption
    m_indptr = np.concatenate([[0], np.cumsum(np.bincount(vector))]).astype(np.int64)
    _, group_index, sizes = np.unique(group_ids, return_inverse=True, return_counts=True)
    return dict(zip(JOIN_ARRAYS, (*_join_inputs(x[members[m_indptr[:-1]]], n_common), vector, m_indptr, members,
                                  group_ids, sizes[group_index].astype(np.int64)), strict=True))


def image_ids(groups: Groups, n: int) -> np.ndarray:
    """One int64 image id per caption of ``n``: integer ids as given, other labels (a photo's
    key) numbered in order of first appearance, ``None``: every caption an image of its own."""
    if groups is None:
        return np.arange(n, dtype=np.int64)
    ids = np.asarray(groups)
    if ids.dtype.kind not in "iu" or ids.ndim != 1:
        numbers: dict[Hashable, int] = {}
        ids = np.fromiter((numbers.setdefault(label, len(numbers)) for label in groups), dtype=np.int64)
    if ids.shape != (n,):
        raise ValueError(f"groups has shape {ids.shape}, expected ({n},)")
    return ids.astype(np.int64)


def mine_rows(arrays: dict[str, np.ndarray], rows: range, top_k: int = 30, max_sim: float = 0.5,
              chunk_size: int = 256, on_progress: Callable[[int], None] | None = None,
              threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The hard negatives of the query rows ``rows`` (a contiguous range) against every caption
    of ``arrays`` (:func:`join_arrays`, in memory or memory-mapped): ``(indices [len(rows),
    top_k], sims)`` as :func:`mine_hard_negatives`. A row's result depends on that row and
    ``arrays`` only, so rows mined in any blocks, threads or processes are bit for bit the same."""
    n = len(arrays["groups"])
    if rows.step != 1 or not (0 <= rows.start <= rows.stop <= n):
        raise ValueError(f"rows must be a contiguous range within 0..{n}, not {rows}")
    indices = np.full((len(rows), top_k), -1, dtype=np.int64)
    sims = np.zeros((len(rows), top_k), dtype=np.float32)
    if len(rows) and top_k:
        queries = np.unique(arrays["vector"][rows.start:rows.stop])
        largest_group = int(arrays["group_size"][rows.start:rows.stop].max())
        _mine(arrays, queries, (rows.start, rows.stop, -1, indices, sims), largest_group, max_sim, chunk_size,
              on_progress, threads)
    return indices, sims


def mine_vectors(arrays: dict[str, np.ndarray], vectors: range, top_k: int = 30, max_sim: float = 0.5,
                 chunk_size: int = 256, on_progress: Callable[[int], None] | None = None,
                 threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hard negatives of every caption of the vectors ``vectors`` (a contiguous range of
    ``arrays``' distinct rows): ``(rows, indices, sims)``, the captions by vector, then index,
    and their negatives as :func:`mine_rows` gives them. Blocks of vectors split the work
    without ranking a vector twice (blocks of rows rank a repeated caption's vector in each)."""
    n_vectors, m_indptr = len(arrays["cnorm"]), arrays["m_indptr"]
    if vectors.step != 1 or not (0 <= vectors.start <= vectors.stop <= n_vectors):
        raise ValueError(f"vectors must be a contiguous range within 0..{n_vectors}, not {vectors}")
    first, last = int(m_indptr[vectors.start]), int(m_indptr[vectors.stop])
    rows = np.array(arrays["members"][first:last])
    indices = np.full((len(rows), top_k), -1, dtype=np.int64)
    sims = np.zeros((len(rows), top_k), dtype=np.float32)
    if len(rows) and top_k:
        _mine(arrays, np.arange(vectors.start, vectors.stop), (0, len(arrays["groups"]), first, indices, sims),
              int(arrays["group_size"][rows].max()), max_sim, chunk_size, on_progress, threads)
    return rows, indices, sims


def vector_blocks(arrays: dict[str, np.ndarray], parts: int) -> list[range]:
    """``parts`` contiguous blocks of the vectors of ``arrays`` (:func:`join_arrays`) of about equal
    work, for :func:`mine_vectors` on as many processes: a vector costs the postings of its rare
    words (the join's inner loop) plus its own length. Vectors seen early (the first of each
    repeated title) join longer postings than later ones, so equal counts would not balance."""
    work = np.cumsum(_vector_work(arrays["indptr"], arrays["indices"], arrays["t_indptr"], arrays["common"]))
    total = int(work[-1]) if len(work) else 0
    edges = [0, *np.searchsorted(work, total * np.arange(1, parts) / parts, side="right").tolist(), len(work)]
    return [range(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _mine(arrays: dict[str, np.ndarray], queries: np.ndarray, out: tuple, largest_group: int, max_sim: float,
          chunk_size: int, on_progress: Callable[[int], None] | None, threads: int | None) -> None:
    """Rank the vectors ``queries`` and write their captions' negatives into ``out`` (see
    :func:`_expand`). Each vector is ranked once, for all of its captions: its best captions
    whatever their group, enough of them that every caption still has top_k once its own
    group's captions are left out."""
    indices = out[3]
    top_k, keep = indices.shape[1], indices.shape[1] + largest_group
    join = tuple(arrays[name] for name in JOIN_ARRAYS[:13])
    expand = (arrays["m_indptr"], arrays["members"], arrays["groups"], top_k, *out)
    # Vectors go to threads in blocks of chunk_size (the compiled kernels run without the
    # GIL), all queued at once so no thread waits for another; each thread keeps its own
    # length-V buffers for the whole run.
    threads = max(1, min(threads or os.cpu_count() or 1, len(queries) // 256 or 1))
    local = threading.local()

    def run(lo: int) -> int:
        if not hasattr(local, "buffers"):
            local.buffers = (np.zeros(len(arrays["cnorm"])), np.empty(len(arrays["cnorm"]), np.int64),
                             np.empty(len(arrays["cnorm"])), np.zeros(len(arrays["common"])))
        block = queries[lo:lo + chunk_size]
        best_s = np.zeros((len(block), keep), np.float32)
        best_j = np.empty((len(block), keep), np.int64)
        counts = _rank_vectors(block, *local.buffers, *join, arrays["m_indptr"], arrays["members"], keep,
                               np.float32(max_sim), best_s, best_j)
        return _expand(block, counts, best_s, best_j, *expand)

    with ThreadPoolExecutor(threads) as pool:
        for done in pool.map(run, range(0, len(queries), chunk_size)):
            if on_progress is not None:
                on_progress(done)


def _join_inputs(x: sp.csr_matrix, n_common: int) -> tuple[np.ndarray, ...]:
    """The arrays ``_rank_vectors`` joins over, from the distinct sorted TF-IDF rows ``x``: ``x``
    and its transpose (CSR, int64 indices), the common-term mask, the common part of every row
    on its own (CSR, column order kept), its norm, rows by that norm descending and those norms."""
    n = x.shape[0]
    xt = x.T.tocsr()
    xt.sort_indices()
    df = np.diff(xt.indptr)
    common = np.zeros(x.shape[1], dtype=np.bool_)
    common[np.argsort(-df, kind="stable")[:n_common]] = True
    common &= df > 1  # a word of one vector: no posting list to skip
    keep = common[x.indices]
    rows = np.repeat(np.arange(n), np.diff(x.indptr))[keep]
    c_indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    c_indices, c_data = x.indices[keep].astype(np.int64), x.data[keep]
    cnorm = np.sqrt(np.bincount(rows, weights=c_data ** 2, minlength=n))
    by_cnorm = np.argsort(-cnorm, kind="stable").astype(np.int64)
    return (x.indptr.astype(np.int64), x.indices.astype(np.int64), x.data, xt.indptr.astype(np.int64),
            xt.indices.astype(np.int64), xt.data, common, c_indptr.astype(np.int64), c_indices, c_data,
            cnorm, by_cnorm, np.ascontiguousarray(cnorm[by_cnorm]))


# Slack of the pruning bound for the float64 rounding of the bound itself. A caption is
# skipped only when float32(bound + slack) < the k-th best (a float32): rounding is
# monotonic, so its float32 similarity could not reach the k-th best, not even as a tie.
_MARGIN = 1e-9
# A rare part at least this large marks a strong candidate, scored first.
_STRONG = 0.2


@numba.njit(cache=True, nogil=True, inline="always")
def _common_dot(j, c_indptr, c_indices, c_data, weights):  # pragma: no cover - compiled
    """Common part of the dot product of row j with the row whose common weights are in
    ``weights`` (dense over the vocabulary, zero elsewhere): j's terms in column order."""
    total = 0.0
    for q in range(c_indptr[j], c_indptr[j + 1]):
        total += weights[c_indices[q]] * c_data[q]
    return total


@numba.njit(cache=True, nogil=True, inline="always")
def _insert(s, j, count, k, best_s, best_j):  # pragma: no cover - compiled
    """Insert (s, j) into the top list sorted by s descending, then j ascending."""
    if count < k:
        pos = count
        count += 1
    elif s > best_s[k - 1] or (s == best_s[k - 1] and j < best_j[k - 1]):
        pos = k - 1
    else:
        return count
    while pos > 0 and (best_s[pos - 1] < s or (best_s[pos - 1] == s and best_j[pos - 1] > j)):
        best_s[pos] = best_s[pos - 1]
        best_j[pos] = best_j[pos - 1]
        pos -= 1
    best_s[pos] = s
    best_j[pos] = j
    return count


@numba.njit(cache=True, nogil=True, inline="always")
def _shares_rare(j, indptr, indices, common, weights):  # pragma: no cover - compiled
    """Whether vector j has a rare word of the vector whose weights are in ``weights``."""
    for u in range(indptr[j], indptr[j + 1]):
        if weights[indices[u]] != 0.0 and not common[indices[u]]:
            return True
    return False


@numba.njit(cache=True, nogil=True, inline="always")
def _keep(s, v, count, k, best_s, best_j, m_indptr, members):  # pragma: no cover - compiled
    """Insert the captions of vector v, all at similarity s, in index order while they make the
    list. Most candidates miss it: that is decided here, inline, without reading v's captions."""
    if count == k and s < best_s[k - 1]:
        return count
    if m_indptr.shape[0] - 1 == members.shape[0]:  # no caption repeats another: vector v is caption v
        return _insert(s, v, count, k, best_s, best_j)
    return _insert_members(s, v, count, k, best_s, best_j, m_indptr, members)


@numba.njit(cache=True, nogil=True)  # a call: inlined, its loop slowed the sweeps around it 1.5x
def _insert_members(s, v, count, k, best_s, best_j, m_indptr, members):  # pragma: no cover - compiled
    """:func:`_keep`'s insertion."""
    for q in range(m_indptr[v], m_indptr[v + 1]):
        j = members[q]
        if count == k and not (s > best_s[k - 1] or (s == best_s[k - 1] and j < best_j[k - 1])):
            break  # and so would every later caption of v
        count = _insert(s, j, count, k, best_s, best_j)
    return count


@numba.njit(cache=True, nogil=True)
def _rank_vectors(queries, acc, touched, rare_parts, weights, indptr, indices, data, t_indptr, t_indices, t_data,
                  common, c_indptr, c_indices, c_data, cnorm, by_cnorm, sorted_cnorm, m_indptr, members, k, max_sim,
                  out_s, out_j):  # pragma: no cover - compiled
    """The best k captions (any group) with 0 < sim < max_sim of each vector in ``queries``,
    into out_s/out_j; returns how many each has. Buffers (per thread, reused across calls):
    acc, the current vector's dot products in progress (all zero between vectors: weights are
    > 0, so zero marks a vector not met yet); touched, the vectors met; rare_parts, their rare
    parts; weights, the current vector's weights (dense, zero between vectors)."""
    counts = np.zeros(queries.shape[0], np.int64)
    for row in range(queries.shape[0]):
        i = queries[row]
        for p in range(indptr[i], indptr[i + 1]):
            weights[indices[p]] = data[p]
        met = _rare_parts(i, acc, touched, rare_parts, indptr, indices, data, t_indptr, t_indices, t_data, common)
        count = _rank_rare(i, met, touched, rare_parts, weights, c_indptr, c_indices, c_data, cnorm, sorted_cnorm,
                           m_indptr, members, k, max_sim, out_s[row], out_j[row])
        if cnorm[i] > 0:
            count = _rank_common_only(i, count, acc, touched, weights, indptr, indices, data, t_indptr, t_indices,
                                      t_data, common, c_indptr, c_indices, c_data, cnorm, by_cnorm, sorted_cnorm,
                                      m_indptr, members, k, max_sim, out_s[row], out_j[row])
        for p in range(indptr[i], indptr[i + 1]):
            weights[indices[p]] = 0.0
        counts[row] = count
    return counts


@numba.njit(cache=True, nogil=True)
def _rare_parts(i, acc, touched, rare_parts, indptr, indices, data, t_indptr, t_indices, t_data,
                common):  # pragma: no cover - compiled
    """Step 1's accumulation: the rare part of vector i's dot product with every vector that
    shares a rare word, from the postings, into touched/rare_parts (acc left zero); returns how many."""
    met = 0
    for p in range(indptr[i], indptr[i + 1]):
        t = indices[p]
        if common[t]:
            continue
        w = data[p]
        for q in range(t_indptr[t], t_indptr[t + 1]):
            j = t_indices[q]
            rare = acc[j]
            if rare == 0.0:  # products of weights are > 0: j's first
                touched[met] = j
                met += 1
            acc[j] = rare + w * t_data[q]
    for m in range(met):  # into a compact list: the sweeps below read it in order
        rare_parts[m] = acc[touched[m]]
        acc[touched[m]] = 0.0
    return met


@numba.njit(cache=True, nogil=True)
def _rank_rare(i, met, touched, rare_parts, weights, c_indptr, c_indices, c_data, cnorm, sorted_cnorm, m_indptr,
               members, k, max_sim, best_s, best_j):  # pragma: no cover - compiled
    """Step 1's ranking of the vectors met (rare parts known): the common part added, exactly,
    to those whose bound (rare part + |c_i| |c_j|) can reach the last kept; strong candidates (a
    large rare part) first, as they raise that bound early. Returns how many are kept."""
    ci, cmax = cnorm[i], sorted_cnorm[0]
    has_common = c_indptr[i + 1] > c_indptr[i]
    count = 0
    for sweep in range(2):
        lower = best_s[k - 1] if count == k else 0.0
        for m in range(met):
            rare = rare_parts[m]
            if sweep == 0:
                if rare < _STRONG:
                    continue
                rare_parts[m] = -1.0  # ranked
            elif rare < 0.0 or np.float32(rare + ci * cmax + _MARGIN) < lower:
                continue
            j = touched[m]
            if sweep == 1 and np.float32(rare + ci * cnorm[j] + _MARGIN) < lower:
                continue
            total = rare
            if has_common:
                total += _common_dot(j, c_indptr, c_indices, c_data, weights)
            s = np.float32(total)
            if s > 0 and s < max_sim:
                count = _keep(s, j, count, k, best_s, best_j, m_indptr, members)
                lower = best_s[k - 1] if count == k else 0.0
    return count


@numba.njit(cache=True, nogil=True)
def _rank_common_only(i, count, acc, touched, weights, indptr, indices, data, t_indptr, t_indices, t_data, common,
                      c_indptr, c_indices, c_data, cnorm, by_cnorm, sorted_cnorm, m_indptr, members, k, max_sim,
                      best_s, best_j):  # pragma: no cover - compiled
    """Step 2: the vectors sharing only common words with i (sim <= |c_i| |c_j|), by a scan of
    the vectors by |c_j| while that bound can reach the last kept, or, when the scan would be
    longer, from the common words' postings. Returns how many are kept."""
    n, ci = cnorm.shape[0], cnorm[i]
    lower = best_s[k - 1] if count == k else 0.0
    lo, hi = 0, n  # how far the scan could go: vectors with ci * |c_j| >= lower
    while lo < hi:
        mid = (lo + hi) // 2
        if np.float32(ci * sorted_cnorm[mid] + _MARGIN) >= lower:
            lo = mid + 1
        else:
            hi = mid
    postings = 0
    for p in range(c_indptr[i], c_indptr[i + 1]):
        postings += t_indptr[c_indices[p] + 1] - t_indptr[c_indices[p]]
    if 2 * lo <= postings:  # a scanned vector costs about two postings
        for r in range(n):
            j = by_cnorm[r]
            lower = best_s[k - 1] if count == k else 0.0
            if np.float32(ci * sorted_cnorm[r] + _MARGIN) < lower or sorted_cnorm[r] == 0.0:
                break
            if _shares_rare(j, indptr, indices, common, weights):
                continue  # ranked in step 1
            s = np.float32(_common_dot(j, c_indptr, c_indices, c_data, weights))
            if s > 0 and s < max_sim:
                count = _keep(s, j, count, k, best_s, best_j, m_indptr, members)
        return count
    met = 0
    for p in range(c_indptr[i], c_indptr[i + 1]):
        t, w = c_indices[p], c_data[p]
        for q in range(t_indptr[t], t_indptr[t + 1]):
            j = t_indices[q]
            common_part = acc[j]
            if common_part == 0.0:
                touched[met] = j
                met += 1
            acc[j] = common_part + w * t_data[q]
    for m in range(met):
        j = touched[m]
        s = np.float32(acc[j])
        acc[j] = 0.0
        if s > 0 and s < max_sim and not _shares_rare(j, indptr, indices, common, weights):
            count = _keep(s, j, count, k, best_s, best_j, m_indptr, members)
    return count


@numba.njit(cache=True, nogil=True)
def _expand(queries, counts, best_s, best_j, m_indptr, members, groups, k, start, stop, first, out_idx,
            out_sim):  # pragma: no cover - compiled
    """The negatives of the captions start:stop of each vector in ``queries``: its ranked
    captions (_rank_vectors) less those of the caption's own group, the first k, into out_idx/
    out_sim: caption i at i - start, or, when ``first`` >= 0, the caption at members[q] at
    q - first. Returns how many captions it filled."""
    done = 0
    for row in range(queries.shape[0]):
        v = queries[row]
        for q in range(m_indptr[v], m_indptr[v + 1]):
            i = members[q]
            if i < start or i >= stop:
                continue
            at = i - start if first < 0 else q - first
            gi = groups[i]
            m = 0
            for c in range(counts[row]):
                j = best_j[row, c]
                if groups[j] != gi and m < k:
                    out_idx[at, m] = j
                    out_sim[at, m] = best_s[row, c]
                    m += 1
            done += 1
    return done


@numba.njit(cache=True, nogil=True)
def _vector_work(indptr, indices, t_indptr, common):  # pragma: no cover - compiled
    """The work of ranking each vector (see :func:`vector_blocks`)."""
    n = indptr.shape[0] - 1
    work = np.empty(n, np.int64)
    for v in range(n):
        w = 1 + indptr[v + 1] - indptr[v]
        for p in range(indptr[v], indptr[v + 1]):
            if not common[indices[p]]:
                w += t_indptr[indices[p] + 1] - t_indptr[indices[p]]
        work[v] = w
    return work


@numba.njit(cache=True, nogil=True)
def _distinct_rows(indptr, indices, data):  # pragma: no cover - compiled
    """The vector of every row: rows equal in indices and values share one, numbered in the
    order of their first row. Rows are hashed, then compared within a hash."""
    n = indptr.shape[0] - 1
    bits = data.view(np.uint64)
    hashes = np.empty(n, np.uint64)
    for i in range(n):
        h = np.uint64(14695981039346656037)
        for p in range(indptr[i], indptr[i + 1]):
            h = (h ^ np.uint64(indices[p])) * np.uint64(1099511628211)
            h = (h ^ bits[p]) * np.uint64(1099511628211)
        hashes[i] = h
    order = np.argsort(hashes, kind="mergesort")  # equal hashes: rows ascending
    first = np.arange(n)  # first[i]: the first row equal to row i
    a = 0
    while a < n:
        b = a + 1
        while b < n and hashes[order[b]] == hashes[order[a]]:
            b += 1
        for x in range(a + 1, b):  # a run of equal hashes (rarely of unequal rows)
            i = order[x]
            for y in range(a, x):
                r = order[y]
                if first[r] == r and _equal_rows(i, r, indptr, indices, data):
                    first[i] = r
                    break
        a = b
    vector = np.empty(n, np.int64)
    count = 0
    for i in range(n):
        if first[i] == i:
            vector[i] = count
            count += 1
        else:
            vector[i] = vector[first[i]]
    return vector


@numba.njit(cache=True, nogil=True, inline="always")
def _equal_rows(i, r, indptr, indices, data):  # pragma: no cover - compiled
    """Whether rows i and r hold the same indices and values."""
    if indptr[i + 1] - indptr[i] != indptr[r + 1] - indptr[r]:
        return False
    for p in range(indptr[i + 1] - indptr[i]):
        if indices[indptr[i] + p] != indices[indptr[r] + p] or data[indptr[i] + p] != data[indptr[r] + p]:
            return False
    return True
