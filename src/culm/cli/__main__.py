"""``python -m culm.cli``: the same as the ``culm`` script (and as quiet on Ctrl-C)."""

from culm.__main__ import main

main()
