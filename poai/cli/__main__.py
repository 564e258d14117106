"""``python -m poai.cli`` runs the ``poai`` command."""

from poai.cli import main

main()
