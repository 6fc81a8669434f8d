"""Data for taomm: the LMDB feature store, dataset adapters and the demo catalog.

Installed as ``taomm.datasets`` (never as a top-level ``datasets``, which would shadow
Hugging Face ``datasets``). Submodules are imported on use, so ``import taomm.datasets``
stays cheap.
"""
