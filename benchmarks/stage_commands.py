"""One recipe: the README's stage commands on a fresh demo workspace reach the demo's R@10.

`taomm demo` drives the library with the training commands' own defaults, so a user who
takes a demo workspace through the stage commands, with the demo's sizes and steps and no
other flag, must get the demo's figure. In a fresh folder this runs:

    taomm init WORK --demo --items 2000 --seed 0 --preset mini
    taomm train-detector --max-steps 250
    taomm prepare
    taomm mine-negatives
    taomm build-vocab
    taomm pretrain --config mini --max-steps 600
    taomm finetune-retrieval --max-steps 800
    taomm evaluate-retrieval --json

(sizes from ``taomm.demo.DemoConfig``; ``--quick`` takes its quick sizes) and prints each
stage's time and the finetuned text -> image R@10 (ITM rerank of 16, evaluate-retrieval's
default and the demo's) beside the demo's: the README's figure, or with ``--demo`` a
``taomm demo`` of the same sizes run first (the baseline in the same run, twice the time).
About 35-45 minutes on 2 AVX2-only cores in fp32 (without ``--demo``).

    python benchmarks/stage_commands.py [--workdir DIR] [--quick] [--demo] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from taomm.demo import FINETUNED_ROW, DemoConfig

DEMO_R10 = 0.973  # `taomm demo`, default sizes (800 finetuning steps), seed 0, measured on 2 bf16 cores (README)
TOLERANCE = 0.05


def stage_commands(cfg: DemoConfig, workdir: Path) -> list[tuple[str, list[str]]]:
    """The README's commands with the demo's sizes and steps (and flags only where the quick
    sizes differ from the commands' defaults)."""
    detector = ["--image-size", str(cfg.detector_image_size)] if cfg.detector_image_size != 128 else []
    batch = ["--batch-size", str(cfg.batch_size)] if cfg.batch_size != 32 else []
    return [
        ("init", ["init", str(workdir), "--demo", "--items", str(cfg.items), "--seed", str(cfg.seed),
                  "--preset", cfg.preset]),
        ("train-detector", ["train-detector", "--max-steps", str(cfg.detector_steps), *detector]),
        ("prepare", ["prepare"]),
        ("mine-negatives", ["mine-negatives"]),
        ("build-vocab", ["build-vocab"]),
        ("pretrain", ["pretrain", "--config", cfg.preset, "--max-steps", str(cfg.pretrain_steps), *batch]),
        ("finetune-retrieval", ["finetune-retrieval", "--max-steps", str(cfg.finetune_steps), *batch]),
        ("evaluate-retrieval", ["evaluate-retrieval", "--json"]),
    ]


def run_taomm(args: list[str], cwd: Path) -> tuple[float, str]:
    """Run ``taomm ARGS`` in ``cwd`` (stderr passed through); returns its seconds and stdout."""
    env = {k: v for k, v in os.environ.items() if k != "TAOMM_WORKSPACE"}
    print(f"$ taomm {' '.join(args)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "taomm", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          text=True, check=False)
    seconds = round(time.perf_counter() - start, 1)
    if done.returncode:
        raise SystemExit(f"taomm {' '.join(args)} exited {done.returncode}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="A fresh folder (default: a new temporary one)")
    parser.add_argument("--quick", action="store_true", help="The demo's --quick sizes (a smoke test)")
    parser.add_argument("--demo", action="store_true", help="Also run `taomm demo` with the same sizes as the baseline")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cfg = DemoConfig.quick() if args.quick else DemoConfig()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="stage-commands-"))
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise SystemExit(f"{root} is not empty: the stage commands need a fresh folder")
    work = root / "stages"
    times: dict[str, float] = {}
    baseline = {"R@10": DEMO_R10, "source": "README (taomm demo, default sizes, seed 0)"}
    if args.demo:
        seconds, out = run_taomm(["demo", "--workdir", str(root / "demo"), "--items", str(cfg.items), "--json",
                                  *(["--quick"] if args.quick else [])], root)
        recall = json.loads(out)["stages"]["evaluate"]["summary"]["recall"][FINETUNED_ROW]
        baseline = {"R@10": recall["R@10"], "source": f"taomm demo in this run ({seconds} s)"}
    for name, command in stage_commands(cfg, work):
        seconds, out = run_taomm(command, root if name == "init" else work)
        times[name] = seconds
    evaluation = json.loads(out)
    got = round(evaluation["R@10"], 3)
    report = {"workdir": str(work), "items": cfg.items, "seconds": times, "total_seconds": round(sum(times.values()), 1),
              "R@1/5/10": [round(evaluation[k], 3) for k in ("R@1", "R@5", "R@10")], "mode": evaluation["mode"],
              "demo": baseline, "difference": round(got - baseline["R@10"], 3),
              "within": abs(got - baseline["R@10"]) <= TOLERANCE}
    (root / "stage_commands.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"stage commands on a fresh demo workspace ({cfg.items} items, seed {cfg.seed}): {work}")
    for name, seconds in times.items():
        print(f"  {name:<20}{seconds:>9.1f} s")
    print(f"  {'all':<20}{report['total_seconds']:>9.1f} s")
    r1, r5, r10 = report["R@1/5/10"]
    print(f"finetuned text -> image R@1/5/10 ({evaluation['mode']}): {r1:.3f} / {r5:.3f} / {r10:.3f}")
    print(f"the demo's R@10: {baseline['R@10']:.3f} ({baseline['source']}); difference {report['difference']:+.3f}, "
          f"{'within' if report['within'] else 'NOT within'} {TOLERANCE}")


if __name__ == "__main__":
    main()
