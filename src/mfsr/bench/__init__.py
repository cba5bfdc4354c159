"""Benchmarks of every stage (``mfsr bench``): :mod:`.training` (feed, bare and real training
step, FLOP/s, MFU), :mod:`.inference` (model and metrics), :mod:`.run` (one run, JSON and
Markdown), :mod:`.report`."""
