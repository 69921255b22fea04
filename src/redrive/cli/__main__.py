"""``python -m redrive.cli``: the same as the ``redrive`` command."""

from redrive.cli.main import main

main()
