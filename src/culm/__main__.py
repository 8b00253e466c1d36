"""``python -m culm`` and the ``culm`` script.

Ctrl-C while the command is still importing its modules exits quietly (130), not with a
traceback.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> Any:
    try:
        from culm.cli import main as cli

        return cli()
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
