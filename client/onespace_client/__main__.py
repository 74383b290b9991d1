"""`python -m onespace_client`: the client commands without the server package."""

from __future__ import annotations

import sys

from onespace_client.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
