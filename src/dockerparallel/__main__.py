"""``python -m dockerparallel``: the command-line tool."""

from .cli import main

main()
