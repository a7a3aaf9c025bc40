"""``python -m c2s_agent`` runs the ``c2s`` command."""

from .cli import main

main()
