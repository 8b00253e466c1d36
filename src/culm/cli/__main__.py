"""``python -m culm.cli``: the same as the ``culm`` script."""

from culm.cli import main

main()
