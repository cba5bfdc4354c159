"""Training: config (``config.py``), checkpoints (``checkpoint.py``), the loop (``loop.py``).

Import the submodules directly; this package imports nothing on its own.
"""
