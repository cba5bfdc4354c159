"""mfsr: multi-frame face super-resolution."""

__version__ = "0.1.0"
