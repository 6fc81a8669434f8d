"""`torchrun -m taomm mine-negatives`: each rank mines a block of distinct TF-IDF rows
("vectors") against the shared, memory-mapped TF-IDF arrays; the negatives equal one
process's bit for bit, and the report's shares are disjoint and cover every vector."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import open_writer, run_taomm, synthetic_item
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.datasets.store import FeatureStore, word_ends_of
from taomm.datasets.store_negatives import store_captions
from taomm.text.mining import (
    JOIN_ARRAYS,
    join_arrays,
    mine_hard_negatives,
    mine_rows,
    mine_vectors,
    vector_blocks,
)
from taomm.train.distributed import check_row_shares, row_share

COLOURS = ["红色", "蓝色", "白色", "黑色", "粉色", "米色"]
STUFF = ["纯棉", "真丝", "雪纺", "牛仔", "针织"]
GOODS = ["连衣裙", "半身裙", "衬衫", "T恤", "外套", "帆布鞋", "双肩包"]
EXTRA = ["新款", "包邮", "韩版", "宽松", "修身", "2020", "夏季", "女"]


def captions(count: int, seed: int = 0) -> list[list[str]]:
    """Title-like word lists: exact duplicates and shared words, so that many similarities tie."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        words = [str(rng.choice(COLOURS)), str(rng.choice(STUFF)), str(rng.choice(GOODS))]
        words += [str(w) for w in rng.choice(EXTRA, int(rng.integers(0, 4)), replace=False)]
        out.append([words[i] for i in rng.permutation(len(words))] if rng.random() < 0.5 else words)
    return out


def test_row_blocks_of_memory_mapped_arrays_equal_the_whole_run(tmp_path: Path) -> None:
    docs = captions(300)
    groups = np.arange(300) // 3
    want = mine_hard_negatives(docs, groups, top_k=10, threads=2)
    for name, array in join_arrays(docs, groups).items():
        np.save(tmp_path / f"{name}.npy", array)
    mapped = {name: np.load(tmp_path / f"{name}.npy", mmap_mode="r") for name in JOIN_ARRAYS}
    for world in (2, 3, 7):
        blocks = [mine_rows(mapped, row_share(300, r, world), top_k=10, chunk_size=16, threads=1) for r in range(world)]
        np.testing.assert_array_equal(np.concatenate([b[0] for b in blocks]), want[0])
        assert np.concatenate([b[1] for b in blocks]).tobytes() == want[1].tobytes()  # bitwise
    vectors = len(mapped["cnorm"])
    assert vectors < 300  # the captions repeat: fewer vectors than captions
    for world in (2, 5):
        blocks = vector_blocks(mapped, world)
        assert check_row_shares([share(r, b) for r, b in enumerate(blocks)], vectors) == []
        assert all(len(b) for b in blocks)
        indices, sims = np.full_like(want[0], -2), np.full_like(want[1], -2)
        for r in range(world):
            rows, block_indices, block_sims = mine_vectors(mapped, blocks[r], top_k=10, chunk_size=16, threads=1)
            assert (indices[rows] == -2).all()  # each caption in one block only
            indices[rows], sims[rows] = block_indices, block_sims
        np.testing.assert_array_equal(indices, want[0])
        assert sims.tobytes() == want[1].tobytes()


def share(rank: int, rows: range, handled: int | None = None) -> dict:
    return {"rank": rank, "rows": [rows.start, rows.stop], "handled": len(rows) if handled is None else handled}


def test_check_row_shares_refuses_ranks_that_each_did_everything() -> None:
    assert [len(row_share(10, r, 4)) for r in range(4)] == [2, 3, 2, 3]
    good = [share(r, row_share(301, r, 2)) for r in range(2)]
    assert check_row_shares(good, 301) == []
    everything = check_row_shares([share(r, range(301)) for r in range(2)], 301)
    assert "the ranks handled 602 rows in all; there are 301" in everything
    assert "rank 1: its rows start at 0, not at 301: overlapping" in everything
    gap = check_row_shares([share(0, range(0, 100)), share(1, range(150, 301))], 301)
    assert gap == ["the ranks handled 251 rows in all; there are 301", "rank 1: its rows start at 150, not at 100: a gap"]
    short = check_row_shares([share(0, range(0, 150), 149), share(1, range(150, 301))], 301)
    assert "rank 0: handled 149 rows of its 150" in short
    assert check_row_shares([share(0, range(0, 150)), share(0, range(150, 301))], 301)  # rank 1 missing


def test_vector_blocks_balance_the_postings_not_the_count() -> None:
    # The first vectors have a rare word shared by many captions, the later ones only words of
    # their own: equal work puts far fewer vectors in the first block.
    docs = [["shared", f"own{i}"] for i in range(40)] + [[f"alone{i}"] for i in range(400)]
    arrays = join_arrays(docs, n_common=0)
    first, second = vector_blocks(arrays, 2)
    assert first.start == 0 and first.stop == second.start and second.stop == 440
    assert len(first) < 100
    assert [len(b) for b in vector_blocks(arrays, 1)] == [440]
    assert [len(b) for b in vector_blocks(join_arrays([]), 3)] == [0, 0, 0]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    return CliRunner()


def test_torchrun_captions_and_store_equal_one_process(cli: CliRunner, tmp_path: Path) -> None:
    docs = captions(301)
    (tmp_path / "caps.txt").write_text("\n".join("".join(d) for d in docs) + "\n", "utf-8")
    one = cli.invoke(app, ["mine-negatives", "--captions", "caps.txt", "--out", "one.jsonl", "--top-k", "10",
                           "--threads", "1", "--json"])
    assert one.exit_code == 0, one.output
    two = run_taomm("mine-negatives", "--captions", "caps.txt", "--out", str(tmp_path / "two.jsonl"), "--top-k", "10", "--json", nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    report = json.loads(two.stdout)
    assert report["world_size"] == 2 and report["threads_per_rank"] == 1 and report["items"] == 301
    arrays = join_arrays(docs)
    assert check_row_shares(report["ranks"], len(arrays["cnorm"]), "vectors") == []
    assert [r["vectors"] for r in report["ranks"]] == [[b.start, b.stop] for b in vector_blocks(arrays, 2)]
    assert sum(r["captions"] for r in report["ranks"]) == 301
    assert not (tmp_path / "two.jsonl.mining-tmp").exists()

    # A store whose items are two captions of each photo (IMAGE#K): never each other's negatives.
    with open_writer(tmp_path / "store") as writer:
        for i, words in enumerate(docs):
            writer.add(dataclasses.replace(synthetic_item(i), item_id=f"img{i // 2:04d}#{i % 2}", title="".join(words),
                                           word_ends=word_ends_of(words)))
    whole = store_captions(tmp_path / "store")
    assert whole[1][:4] == ["img0000", "img0000", "img0001", "img0001"]
    shares = [store_captions(tmp_path / "store", r, 3) for r in range(3)]  # what each of 3 ranks reads
    assert [len(docs) for docs, _ in shares] == [100, 100, 101]
    assert [sum((share[k] for share in shares), []) for k in (0, 1)] == list(whole)
    ran = run_taomm("mine-negatives", "--store", str(tmp_path / "store"), "--top-k", "10", "--json", nproc=2)
    assert ran.returncode == 0, ran.stderr[-3000:]
    want, _ = mine_hard_negatives(*store_captions(tmp_path / "store"), top_k=10)
    assert check_row_shares(json.loads(ran.stdout)["ranks"], len(join_arrays(*store_captions(tmp_path / "store"))["cnorm"]),
                            "vectors") == []
    with FeatureStore(tmp_path / "store") as fs:
        assert fs.meta.negatives == 301
        for i in range(301):
            np.testing.assert_array_equal(fs.negatives(i), want[i][want[i] >= 0])
            assert i ^ 1 not in fs.negatives(i).tolist()  # the photo's other caption
    assert not (tmp_path / "store" / "mining.tmp").exists()


def test_torchrun_fails_with_the_failed_ranks_message(tmp_path: Path) -> None:
    failed = run_taomm("mine-negatives", "--captions", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "negs.jsonl"), "--json", nproc=2)
    assert failed.returncode != 0
    assert f"taomm: error: rank 0 failed: No such file or directory: {tmp_path / 'missing.txt'}" in failed.stderr, \
        failed.stderr[-3000:]
    assert not (tmp_path / "negs.jsonl").exists() and not (tmp_path / "negs.jsonl.mining-tmp").exists()


# A child process mines in memory and memory-mapped as the ranks do (mine_ranks' copy-on-write
# maps), then reports what its kernels compiled and what they loaded from numba's cache.
COMPILES = """
import json, sys, tempfile
from pathlib import Path
import numpy as np
from taomm.text import mining
arrays = mining.join_arrays([["a", "b"], ["a", "c"], ["b", "c", "d"]] * 100)
with tempfile.TemporaryDirectory() as tmp:
    for name, array in arrays.items():
        np.save(Path(tmp) / f"{name}.npy", array)
    mapped = {name: np.load(Path(tmp) / f"{name}.npy", mmap_mode="c") for name in mining.JOIN_ARRAYS}
    for one in (arrays, mapped):
        mining.mine_vectors(one, range(len(one["cnorm"])), top_k=5)
        mining.vector_blocks(one, 2)
kernels = [f for f in vars(mining).values() if hasattr(f, "stats") and f.signatures]  # the ones Python calls
print(json.dumps({"kernels": len(kernels), "signatures": max(len(f.signatures) for f in kernels),
                  "misses": sum(sum(f.stats.cache_misses.values()) for f in kernels),
                  "hits": sum(sum(f.stats.cache_hits.values()) for f in kernels)}))
"""


def test_a_second_process_loads_the_kernels_from_the_cache_for_both_kinds_of_arrays() -> None:
    import subprocess
    import sys

    from helpers import child_env

    runs = [subprocess.run([sys.executable, "-c", COMPILES], env=child_env(), capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), runs[-1].stderr[-3000:]
    second = json.loads(runs[1].stdout)
    # One signature per kernel: the ranks' memory-mapped arrays run the in-memory arrays' code.
    assert second["kernels"] >= 4 and second["signatures"] == 1
    assert second["misses"] == 0 and second["hits"] >= second["kernels"]
