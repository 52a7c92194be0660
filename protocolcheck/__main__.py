"""``python -m protocolcheck`` runs the command-line interface."""

from .cli import main

main()
