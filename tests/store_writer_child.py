"""Writes a deterministic store and reports each commit; the SIGKILL test kills it mid-run.

Usage: python store_writer_child.py STORE COUNT BATCH [SECONDS_PER_ITEM]

SECONDS_PER_ITEM stands for the producer (decoding, detection) so that a kill can land
anywhere in a batch, not only after the writer has already finished.
"""

import sys
import time

from helpers import open_writer, synthetic_item

FEATURE_DIM = 2048


def main() -> None:
    path, count, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    with open_writer(path, feature_dim=FEATURE_DIM, batch_size=batch) as writer:
        for i in range(count):
            if f"item{i:05d}" not in writer:
                time.sleep(pause)
            writer.add(synthetic_item(i, FEATURE_DIM, max_boxes=16))
            if (i + 1) % batch == 0:
                print(f"committed {writer.meta.count}", flush=True)
        ids = [f"item{i:05d}" for i in range(count)]
        writer.set_split("train", ids[: count // 2])
        writer.set_split("test", ids[count // 2:])
    print("done", flush=True)


if __name__ == "__main__":
    main()
