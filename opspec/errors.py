"""One exception type for bad input, and the CLI wrapper that turns it into a one-line message."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., int])


class OpspecError(Exception):
    """Bad input from the user (a file, key or value): the message names it and what was expected."""


def cli_main(main: F) -> F:
    """Wrap a CLI entry point: OpspecError (and Ctrl-C) become one line on stderr and a non-zero exit."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except OpspecError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper  # type: ignore[return-value]
