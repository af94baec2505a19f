"""Logging set-up and config-error reporting for the command-line front ends (library modules
only log, never print).

Library code uses ``logging.getLogger(__name__)``; a command calls `setup_logging()` once so
INFO messages (what is being built, cache hits) reach stderr as plain lines.  Progress bars
(tqdm) write to stderr themselves and stay as they are.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

from datagen.errors import ConfigError


def setup_logging(verbose: bool = False) -> None:
    """Plain `message` lines on stderr, INFO and up (DEBUG with `verbose` or HANDSYNTH_DEBUG=1).

    Does nothing if the root logger already has handlers (an embedding program, or pytest's
    capture), so calling it from a `main()` that tests run in-process is harmless.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    level = logging.DEBUG if verbose or os.environ.get("HANDSYNTH_DEBUG") == "1" else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


def config_errors_exit(main):
    """Decorate a command's `main(argv)`: a ConfigError from anywhere in it - the config file, or
    a value only the hand model can check when it is built (the forearm's length) - is printed as
    `error: <message naming the key>` on stderr and the command returns 2, without a traceback."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return wrapped
