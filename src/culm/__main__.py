"""``python -m culm``: the same as the ``culm`` command."""

from culm.cli import main

main()
