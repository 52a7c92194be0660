"""``python -m protocolcheck`` runs the command-line interface."""

from protocolcheck.cli.main import main

main()
