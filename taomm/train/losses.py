"""Losses shared by pretraining and finetuning: in-batch contrastive (InfoNCE) with the
negatives gathered across DDP ranks inside the loss."""

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


def contrastive_sums(text: torch.Tensor, image: torch.Tensor, scale: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE of unit vectors, row i of ``text`` matching row i of ``image``,
    every other row of the global batch a negative. Returns the summed loss over this
    rank's rows ((t2i + i2t) / 2), the gathered text and image vectors, and this rank's
    rows' indices in them (the targets)."""
    text, image = text.float(), image.float()
    all_text, offset = gather_with_grad(text)
    all_image, _ = gather_with_grad(image)
    rows = torch.arange(text.shape[0], device=text.device) + offset
    t2i = F.cross_entropy(scale * text @ all_image.T, rows, reduction="sum")
    i2t = F.cross_entropy(scale * image @ all_text.T, rows, reduction="sum")
    return (t2i + i2t) / 2, all_text, all_image, rows
