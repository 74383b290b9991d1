"""Leaving quietly when the reader of stdout goes away (`onespace collections list --json | head`).

The conventional way: catch BrokenPipeError at the top, point stdout at /dev/null so the flush
at interpreter exit cannot raise again, and exit 141, the status a shell reports for a tool
stopped by SIGPIPE (`seq 1000000 | head -1`), so `set -o pipefail` scripts treat it alike.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

__all__ = ["EXIT_BROKEN_PIPE", "quiet_on_broken_pipe"]

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


def quiet_on_broken_pipe(main: Callable[[], int]) -> int:
    """`main()`'s exit code, or EXIT_BROKEN_PIPE without a traceback once stdout is a closed pipe."""
    try:
        try:
            code = main()
        finally:  # also on SystemExit (--help): output that fit the buffer meets the closed pipe here
            sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    return code
