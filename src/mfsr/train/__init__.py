"""Training: config (``config.py``), data (``data.py``), set-up (``setup.py``), the loop
(``loop.py``), validation (``validation.py``), checkpoints (``checkpoint.py``, ``state.py``),
logs (``logs.py``).

Import the submodules directly; this package imports nothing on its own.
"""
