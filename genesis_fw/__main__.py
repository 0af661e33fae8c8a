"""``python -m genesis_fw`` is the same as the ``genesis-fw`` command."""

from .cli import main

main()
