"""``python -m app.cli``: the ``streamfit`` command, for a process without the console script."""

from app.cli import main

main()
