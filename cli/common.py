"""What every command shares: one-line errors with exit codes, number formats."""

from __future__ import annotations

import functools
import math
import sys

import click

from ..errors import CodecError


def _fail(message: str, code: int) -> None:
    click.echo(f"rdcodec: error: {message}", err=True)
    sys.exit(code)


def reports_errors(command):
    """Turn a ``CodecError`` into one line on stderr and its exit code; Ctrl-C into 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CodecError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return wrapper


def fmt_db(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"
