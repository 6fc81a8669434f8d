"""Training checkpoints: ``RUN/checkpoints/step-NNNNNNNN/`` with the model weights
(``model.safetensors``), the trainer state (``trainer.pt``: optimizer, scheduler, step,
counters) and each rank's RNG state (``rng-rank-R.pt``), all loadable with
``torch.load(..., weights_only=True)``.

A checkpoint is written into a hidden ``.tmp-step-N`` folder, every file fsynced, and then
renamed into place: a folder named ``step-N`` is always complete, and a process killed
mid-write leaves only a temporary folder, ignored and removed by the next save.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_model
from torch import nn

from taomm.errors import TaommError
from taomm.model.pretrained import CONTRASTIVE, LEGACY_CONTRASTIVE, upgrade_state_dict
from taomm.train.distributed import DistInfo, barrier

CHECKPOINTS = "checkpoints"
MODEL_FILE, STATE_FILE = "model.safetensors", "trainer.pt"
_NAME = re.compile(r"^step-(\d{8})$")


def rng_file(rank: int) -> str:
    return f"rng-rank-{rank}.pt"


def checkpoint_dir(run: str | os.PathLike[str], step: int) -> Path:
    return Path(run) / CHECKPOINTS / f"step-{step:08d}"


def list_checkpoints(run: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        m = _NAME.match(path.name)
        if m and (path / MODEL_FILE).is_file() and (path / STATE_FILE).is_file():
            found.append((int(m.group(1)), path))
    return sorted(found)


def latest_checkpoint(run: str | os.PathLike[str]) -> tuple[int, Path] | None:
    found = list_checkpoints(run)
    return found[-1] if found else None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_files(folder: Path, model: nn.Module, state: dict[str, Any]) -> None:
    save_model(model, str(folder / MODEL_FILE))  # tied tensors are stored once
    torch.save(state, folder / STATE_FILE)
    for name in (MODEL_FILE, STATE_FILE):
        _fsync(folder / name)


def save_checkpoint(run: str | os.PathLike[str], step: int, model: nn.Module, state: dict[str, Any],
                    rng: dict[str, Any], info: DistInfo, keep_last: int = 3) -> Path:
    """Write the checkpoint of ``step`` (collective: every rank calls it) and keep the last
    ``keep_last`` complete ones."""
    root = Path(run) / CHECKPOINTS
    final, tmp = checkpoint_dir(run, step), root / f".tmp-step-{step:08d}"
    if info.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(info)
    torch.save(rng, tmp / rng_file(info.rank))
    _fsync(tmp / rng_file(info.rank))
    barrier(info)
    if info.is_main:
        _write_files(tmp, model, state)
        _fsync(tmp)
        if final.exists():  # the same step saved again (e.g. stopped right after a save)
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync(root)
        for _, old in list_checkpoints(run)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)
    barrier(info)
    return final


def load_checkpoint(path: Path, model: nn.Module, rank: int, optimizer: torch.optim.Optimizer | None = None
                    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Load the weights into ``model``; return the trainer state and this rank's RNG state
    (None when the checkpoint was written by fewer ranks). A checkpoint of the earlier layout
    (``taomm.model.pretrained.upgrade_state_dict``) loads too, its optimizer state put in the
    order of ``optimizer``'s parameters (``legacy_optimizer_state``)."""
    try:
        weights = load_file(str(path / MODEL_FILE))
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        rng_path = path / rng_file(rank)
        rng = torch.load(rng_path, map_location="cpu", weights_only=True) if rng_path.is_file() else None
    except Exception as exc:  # a corrupt file: say which checkpoint
        raise TaommError(f"cannot read checkpoint {path}: {exc}") from exc
    legacy = any(key.split(".")[0] in LEGACY_CONTRASTIVE for key in weights)
    missing, unexpected = model.load_state_dict(upgrade_state_dict(weights), strict=False)
    tied = set(getattr(model, "tied_keys", ()))
    if unexpected or [k for k in missing if k not in tied]:
        raise TaommError(f"checkpoint {path} does not fit the model (missing {len(missing)} keys, "
                         f"unexpected {len(unexpected)})")
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    if legacy and optimizer is not None:
        state["optimizer"] = legacy_optimizer_state(state["optimizer"], optimizer, model)
    return state, rng


def legacy_optimizer_state(saved: dict[str, Any], optimizer: torch.optim.Optimizer, model: nn.Module
                           ) -> dict[str, Any]:
    """``saved``, an optimizer state of the earlier layout, with its parameters in the order of
    ``optimizer``'s. The optimizer pairs saved and current parameters by position in each
    group, in ``named_parameters`` order: then the task model's own ``logit_scale`` came first,
    now it comes with the other ``contrastive`` tensors. Groups of other sizes: unchanged, for
    ``load_state_dict`` to refuse."""
    names = {id(p): name for name, p in model.named_parameters()}
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    if sizes != [len(g["params"]) for g in saved["param_groups"]]:
        return saved
    groups = []
    for group, old in zip(optimizer.param_groups, saved["param_groups"], strict=True):
        now = [names[id(p)] for p in group["params"]]
        # then: the head's own tensors (contrastive.X, X without a dot) were the model's, first
        then = sorted(now, key=lambda n: not (n.startswith(CONTRASTIVE + ".") and n.count(".") == 1))
        position = dict(zip(then, old["params"], strict=True))
        groups.append({**old, "params": [position[n] for n in now]})
    return {**saved, "param_groups": groups}
