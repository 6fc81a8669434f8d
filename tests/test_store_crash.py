"""A writer killed with SIGKILL at random points, then rerun, gives the same store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import content_hash

from taomm.datasets.store import FeatureStore

CHILD = Path(__file__).with_name("store_writer_child.py")
COUNT, BATCH = 400, 10


def run_child(store: Path, kill_at: int | None = None, delay: float = 0.0) -> int:
    """Run the writer; SIGKILL it ``delay`` s after the store holds ``kill_at`` items.
    Returns its exit code."""
    proc = subprocess.Popen([sys.executable, str(CHILD), str(store), str(COUNT), str(BATCH), "0.002"],
                            stdout=subprocess.PIPE, bufsize=0)
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        if kill_at is not None and line.startswith(b"committed") and int(line.split()[1]) >= kill_at:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            break
    proc.stdout.close()
    return proc.wait(timeout=120)


def check_consistent(path: Path) -> int:
    """Every committed item is whole and reachable by id; returns the count."""
    with FeatureStore(path) as store:
        n = len(store)
        for i in range(n):
            item = store[i]
            assert item.item_id == f"item{i:05d}"
            assert store.ordinal(item.item_id) == i
        return n


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_rerun_gives_the_same_store(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert run_child(reference) == 0
    want = content_hash(reference)

    crashed = tmp_path / "crashed"
    rng = np.random.default_rng(1234)
    counts = []
    batches = COUNT // BATCH
    # One kill in each third of the run, at a random batch and a random delay after it.
    for third in range(3):
        kill_at = BATCH * int(rng.integers(1 + third * batches // 3, (third + 1) * batches // 3))
        code = run_child(crashed, kill_at=int(kill_at), delay=float(rng.uniform(0, 0.03)))
        if code == 0:  # it finished before the kill landed: nothing to check this round
            continue
        assert code == -signal.SIGKILL
        n = check_consistent(crashed)
        assert n % BATCH == 0, "a batch is all or nothing"
        counts.append(n)
    assert counts, "no run was actually killed"
    assert run_child(crashed) == 0
    assert check_consistent(crashed) == COUNT
    assert content_hash(crashed) == want

    # A finished store rerun is a no-op.
    assert run_child(crashed) == 0
    assert content_hash(crashed) == want
    assert os.listdir(crashed) and sorted(os.listdir(crashed)) == sorted(os.listdir(reference))
