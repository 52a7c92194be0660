"""``python -m protocolcheck`` runs the command-line interface."""

from protocolcheck.cli import main

main()
