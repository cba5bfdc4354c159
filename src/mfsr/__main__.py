"""``python -m mfsr`` runs the command line."""

from mfsr.cli import main

main()
