"""Parameter counts per part of an InterBERT model (for `taomm model-info`)."""

from __future__ import annotations

from torch import nn

# Backbone submodule -> reported part.
_PARTS = {
    "embeddings": "text embeddings",
    "region_embeddings": "region embeddings",
    "interaction": "interaction layers",
    "image_extractor": "image extractor",
    "text_extractor": "text extractor",
}


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters per part (tied parameters counted once, where they are first owned) and total."""
    backbone = getattr(model, "interbert", model)
    counts: dict[str, int] = {}
    seen: set[int] = set()

    def add(part: str, module: nn.Module) -> None:
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                counts[part] = counts.get(part, 0) + p.numel()

    for name, part in _PARTS.items():
        add(part, getattr(backbone, name))
    for name, module in model.named_children():
        if module is not backbone:
            add(f"{name.replace('_', ' ')}", module)
    for name, p in model.named_parameters(recurse=False):
        if id(p) not in seen:
            seen.add(id(p))
            counts[name.replace("_", " ")] = p.numel()
    counts["total"] = sum(counts.values())
    return counts
