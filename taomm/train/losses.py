"""Losses shared by pretraining and finetuning: in-batch contrastive (InfoNCE) with the
negatives gathered across DDP ranks inside the loss. Rows that share a photo or a title
(``groups``, from the datasets) are right answers for each other, never negatives: their
logits are left out."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' rows (this rank's keep their gradient path) and this rank's offset."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(x)
    return torch.cat(parts, 0), dist.get_rank() * x.shape[0]


def gather(x: torch.Tensor) -> torch.Tensor:
    """All ranks' rows, without gradient (e.g. integer labels)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, 0)


def same_group(groups: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    """(B, N) bool: pairs of this rank's rows and the global batch's that share a group
    (any column of ``groups`` (B, K): photo, title) without being the row's own pair."""
    if groups is None:
        return None
    all_groups = gather(groups)
    same = (groups[:, None, :] == all_groups[None, :, :]).any(-1)  # (B, N)
    same[torch.arange(len(rows), device=rows.device), rows] = False
    return same


def leave_out(logits: torch.Tensor, same: torch.Tensor | None) -> torch.Tensor:
    """Logits with the pairs of ``same`` removed from the softmax."""
    return logits if same is None else logits.masked_fill(same, float("-inf"))


def contrastive_sums(text: torch.Tensor, image: torch.Tensor, scale: torch.Tensor, groups: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE of unit vectors, row i of ``text`` matching row i of ``image``,
    every other row of the global batch a negative, except rows that share a group with it
    (``groups`` (B, K) int: photo and title group ids, equal ids in a column = the same
    photo or title). Returns the summed loss over this rank's rows ((t2i + i2t) / 2), the
    gathered text and image vectors, and this rank's rows' indices in them (the targets)."""
    text, image = text.float(), image.float()
    all_text, offset = gather_with_grad(text)
    all_image, _ = gather_with_grad(image)
    rows = torch.arange(text.shape[0], device=text.device) + offset
    same = same_group(groups, rows)  # sharing a group is symmetric: one mask for both directions
    t2i = F.cross_entropy(leave_out(scale * text @ all_image.T, same), rows, reduction="sum")
    i2t = F.cross_entropy(leave_out(scale * image @ all_text.T, same), rows, reduction="sum")
    return (t2i + i2t) / 2, all_text, all_image, rows
