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
work on frequent words. The vocabulary is split into the ``n_common`` most frequent
terms ("common") and the rest ("rare"). For each row i:

1. The postings of its rare terms accumulate, in a per-thread buffer, the rare part of the
   dot product with every caption j sharing a rare word; the common part is added by
   merging i's few common terms with j's sorted row. That is the exact similarity; the
   best ``top_k`` eligible ones are kept by insertion, and the k-th is a lower bound L of
   the row's final k-th best.
2. A caption sharing only common words has ``sim = c_i . c_j <= |c_i| |c_j|``
   (Cauchy-Schwarz on the common parts). Captions sorted by ``|c_j|`` are scanned while
   that bound can still reach L (L rising as better ones are found); when that scan would
   be longer than the common terms' postings, the postings are accumulated instead.

Similarities are sums over the shared terms in column order, rare part then common part,
so sim(i, j) == sim(j, i) bit for bit. Nothing is ever N x N: memory is the matrix, its
transpose and a few length-N buffers per thread; rows are spread over the CPU's cores.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import scipy.sparse as sp


def tokens(words: Sequence[str]) -> list[str]:
    """The mining tokens of a caption: its words stripped (English words carry their leading
    space) and lower-cased, blank words dropped."""
    return [w.strip().lower() for w in words if w and not w.isspace()]


def tfidf_matrix(docs: Sequence[Sequence[str]]) -> sp.csr_matrix:
    """TF-IDF rows (float64, l2-normalised, CSR) of pre-tokenised documents.

    Columns follow the sorted vocabulary, so the matrix equals scikit-learn's
    ``TfidfVectorizer(analyzer=lambda d: d).fit_transform`` on the same tokens.
    """
    vocab: dict[str, int] = {}
    indices: list[int] = []
    indptr = [0]
    for doc in docs:
        indices.extend(vocab.setdefault(w, len(vocab)) for w in tokens(doc))
        indptr.append(len(indices))
    terms = sorted(vocab)
    remap = np.empty(len(terms), dtype=np.int64)
    remap[[vocab[t] for t in terms]] = np.arange(len(terms))
    cols = remap[np.asarray(indices, dtype=np.int64)]
    x = sp.csr_matrix((np.ones(cols.size), cols, np.asarray(indptr, dtype=np.int64)),
                      shape=(len(indptr) - 1, len(terms)))
    x.sum_duplicates()  # raw counts; also sorts the indices of every row
    n = x.shape[0]
    df = np.bincount(x.indices, minlength=x.shape[1])
    x.data *= (np.log((1.0 + n) / (1.0 + df)) + 1.0)[x.indices]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x.data /= np.repeat(np.where(norms > 0, norms, 1.0), np.diff(x.indptr))
    return x


def mine_hard_negatives(
    docs: Sequence[Sequence[str]],
    groups: Sequence[int] | np.ndarray | None = None,
    top_k: int = 30,
    max_sim: float = 0.5,
    chunk_size: int = 256,
    n_common: int = 32,
    on_progress: Callable[[int], None] | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Hard negatives of every caption: ``(indices int64 [N, top_k], sims float32 [N, top_k])``.

    ``groups`` holds one image id per caption (default: every caption its own image);
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


# What the join kernel reads, by name (see _join_inputs), then the group of every caption.
JOIN_ARRAYS = ("indptr", "indices", "data", "t_indptr", "t_indices", "t_data", "common", "c_indptr", "c_indices",
               "c_data", "cnorm", "by_cnorm", "sorted_cnorm", "groups")


def join_arrays(docs: Sequence[Sequence[str]], groups: Sequence[int] | np.ndarray | None = None,
                n_common: int = 32) -> dict[str, np.ndarray]:
    """Everything :func:`mine_rows` joins over, by name (``JOIN_ARRAYS``): plain arrays, so that
    they can be built once, saved as ``.npy`` and memory-mapped by other processes."""
    x = sp.csr_matrix(tfidf_matrix(docs), dtype=np.float64)
    n = x.shape[0]
    group_ids = np.arange(n, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    if group_ids.shape != (n,):
        raise ValueError(f"groups has shape {group_ids.shape}, expected ({n},)")
    x.sort_indices()  # the same term order in both rows of a pair: symmetric sums
    return dict(zip(JOIN_ARRAYS, (*_join_inputs(x, n_common), group_ids), strict=True))


def mine_rows(arrays: dict[str, np.ndarray], rows: range, top_k: int = 30, max_sim: float = 0.5,
              chunk_size: int = 256, on_progress: Callable[[int], None] | None = None,
              threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The hard negatives of the query rows ``rows`` (a contiguous range) against every caption
    of ``arrays`` (:func:`join_arrays`, in memory or memory-mapped): ``(indices [len(rows),
    top_k], sims)`` as :func:`mine_hard_negatives`. A row's result depends on that row and
    ``arrays`` only, so rows mined in any blocks, threads or processes are bit for bit the same."""
    n, vocab = len(arrays["groups"]), len(arrays["common"])
    if rows.step != 1 or not (0 <= rows.start <= rows.stop <= n):
        raise ValueError(f"rows must be a contiguous range within 0..{n}, not {rows}")
    indices = np.full((len(rows), top_k), -1, dtype=np.int64)
    sims = np.zeros((len(rows), top_k), dtype=np.float32)
    if len(rows) == 0 or top_k == 0:
        return indices, sims
    args = (*(arrays[name] for name in JOIN_ARRAYS), top_k, np.float32(max_sim), rows.start, indices, sims)
    # Rows go to threads in blocks of chunk_size (the compiled kernel runs without the GIL),
    # all queued at once so no thread waits for another; each thread keeps its own
    # length-N buffers for the whole run.
    threads = max(1, min(threads or os.cpu_count() or 1, len(rows) // 256 or 1))
    local = threading.local()

    def run(lo: int) -> int:
        if not hasattr(local, "buffers"):
            local.buffers = (np.zeros(n), np.empty(n, np.int64), np.full(n, -1, np.int64),
                             np.zeros(vocab), np.empty(top_k, np.float32), np.empty(top_k, np.int64))
        hi = min(lo + chunk_size, rows.stop)
        _mine_rows(lo, hi, *local.buffers, *args)
        return hi - lo

    with ThreadPoolExecutor(threads) as pool:
        for done in pool.map(run, range(rows.start, rows.stop, chunk_size)):
            if on_progress is not None:
                on_progress(done)
    return indices, sims


def _join_inputs(x: sp.csr_matrix, n_common: int) -> tuple[np.ndarray, ...]:
    """The arrays ``_mine_rows`` joins over, from the sorted TF-IDF rows ``x``: ``x`` and its
    transpose (CSR, int64 indices), the common-term mask, the common part of every row on its
    own (CSR, column order kept), its norm, rows by that norm descending and those norms."""
    n = x.shape[0]
    xt = x.T.tocsr()
    xt.sort_indices()
    df = np.diff(xt.indptr)
    common = np.zeros(x.shape[1], dtype=np.bool_)
    common[np.argsort(-df, kind="stable")[:n_common]] = True
    common &= df > 1  # a word of one caption is never shared
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


@numba.njit(nogil=True, inline="always")
def _common_dot(j, c_indptr, c_indices, c_data, weights):  # pragma: no cover - compiled
    """Common part of the dot product of row j with the row whose common weights are in
    ``weights`` (dense over the vocabulary, zero elsewhere): j's terms in column order."""
    total = 0.0
    for q in range(c_indptr[j], c_indptr[j + 1]):
        total += weights[c_indices[q]] * c_data[q]
    return total


@numba.njit(nogil=True, inline="always")
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


@numba.njit(nogil=True)
def _mine_rows(lo, hi, acc, touched, seen, weights, best_s, best_j, indptr, indices, data, t_indptr,
               t_indices, t_data, common, c_indptr, c_indices, c_data, cnorm, by_cnorm, sorted_cnorm,
               groups, k, max_sim, row0, out_idx, out_sim):  # pragma: no cover - compiled
    """Rows lo:hi into out_idx/out_sim, row i at i - row0. Buffers (per thread, reused across
    calls): acc, the rare part of the current row's dot products (all zero between rows); touched, the
    captions with one; seen[j] == i when sim(i, j) is done for row i, == -2 - i when j is
    in step 2's postings; weights, the current row's common weights (zero between rows)."""
    n = groups.shape[0]
    for i in range(lo, hi):
        gi = groups[i]
        count = 0
        for p in range(c_indptr[i], c_indptr[i + 1]):
            weights[c_indices[p]] = c_data[p]
        has_common = c_indptr[i + 1] > c_indptr[i]
        # 1. captions sharing a rare word: exact similarity
        nt = 0
        common_postings = 0
        for p in range(indptr[i], indptr[i + 1]):
            t = indices[p]
            if common[t]:
                common_postings += t_indptr[t + 1] - t_indptr[t]
                continue
            w = data[p]
            for q in range(t_indptr[t], t_indptr[t + 1]):
                j = t_indices[q]
                if seen[j] != i:
                    seen[j] = i
                    touched[nt] = j
                    nt += 1
                acc[j] += w * t_data[q]
        # Strong candidates first (a large rare part): they set the k-th best early, and
        # then most of the weak ones fail their bound (rare part + |c_i| |c_j|) unscored.
        ci = cnorm[i]
        for sweep in range(2):
            lower = best_s[k - 1] if count == k else 0.0
            for m in range(nt):
                j = touched[m]
                rare = acc[j]
                if sweep == 0:
                    if rare < _STRONG:
                        continue
                    acc[j] = -1.0  # scored
                else:
                    acc[j] = 0.0
                    if rare < 0.0 or np.float32(rare + ci * cnorm[j] + _MARGIN) < lower:
                        continue
                total = rare
                if has_common:
                    total += _common_dot(j, c_indptr, c_indices, c_data, weights)
                s = np.float32(total)
                if groups[j] != gi and s > 0 and s < max_sim:
                    count = _insert(s, j, count, k, best_s, best_j)
                    lower = best_s[k - 1] if count == k else 0.0
        seen[i] = i  # (the row itself was touched unless it has no rare word)
        # 2. captions sharing only common words
        if ci > 0:
            lower = best_s[k - 1] if count == k else 0.0
            # how far a scan by |c_j| could go: captions with ci * |c_j| >= lower
            lo, hi = 0, n
            while lo < hi:
                mid = (lo + hi) // 2
                if np.float32(ci * sorted_cnorm[mid] + _MARGIN) >= lower:
                    lo = mid + 1
                else:
                    hi = mid
            if 2 * lo <= common_postings:  # a scanned caption costs about two postings
                for r in range(n):
                    j = by_cnorm[r]
                    lower = best_s[k - 1] if count == k else 0.0
                    if np.float32(ci * sorted_cnorm[r] + _MARGIN) < lower or sorted_cnorm[r] == 0.0:
                        break
                    if seen[j] == i:
                        continue
                    s = np.float32(_common_dot(j, c_indptr, c_indices, c_data, weights))
                    if groups[j] != gi and s > 0 and s < max_sim:
                        count = _insert(s, j, count, k, best_s, best_j)
            else:
                nt = 0
                for p in range(indptr[i], indptr[i + 1]):
                    t = indices[p]
                    if not common[t]:
                        continue
                    w = data[p]
                    for q in range(t_indptr[t], t_indptr[t + 1]):
                        j = t_indices[q]
                        if seen[j] == i:
                            continue
                        if seen[j] != -2 - i:
                            seen[j] = -2 - i
                            touched[nt] = j
                            nt += 1
                        acc[j] += w * t_data[q]
                for m in range(nt):
                    j = touched[m]
                    s = np.float32(acc[j])
                    acc[j] = 0.0
                    if groups[j] != gi and s > 0 and s < max_sim:
                        count = _insert(s, j, count, k, best_s, best_j)
        for p in range(c_indptr[i], c_indptr[i + 1]):
            weights[c_indices[p]] = 0.0
        for m in range(count):
            out_idx[i - row0, m] = best_j[m]
            out_sim[i - row0, m] = best_s[m]

