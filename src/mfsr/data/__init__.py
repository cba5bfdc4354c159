"""Data: on-disk sequence format, degradation model, dataset building and torch datasets.

Submodules are imported on demand (``mfsr.data.degrade``, ``mfsr.data.sample``...), so importing
this package costs nothing; only ``mfsr.data.dataset`` imports torch.
"""
