"""One exception type for bad input, and the CLI wrapper that turns it into a one-line message."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

from opspec.core.fileio import signal_cleanup

F = TypeVar("F", bound=Callable[..., int])


class OpspecError(Exception):
    """Bad input from the user (a file, key or value): the message names it and what was expected."""


def os_error_line(err: OSError) -> str:
    """An OSError as one line naming the file: "PATH: cannot write (No space left on device)"."""
    text = str(err).strip()
    reason = err.strerror or (text.splitlines()[0] if text else type(err).__name__)
    return f"{err.filename}: {reason}" if err.filename is not None else reason


def cli_main(main: F) -> F:
    """Wrap a CLI entry point: OpspecError, an OSError of the file system (read-only, full) and Ctrl-C
    become one line on stderr and a non-zero exit; SIGTERM and SIGINT remove the temp files being written."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            with signal_cleanup():
                return main(*args, **kwargs)
        except OpspecError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except OSError as err:  # the disk or the folder's permissions, not the input: still one line
            print(f"error: {os_error_line(err)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper  # type: ignore[return-value]
