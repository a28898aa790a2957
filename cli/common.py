"""What every command shares: one-line errors with exit codes, number formats, the
checks of an output before any work, no empty path."""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import click

from ..errors import BitstreamError, CodecError, CodecNotice, OutputError


def fail(message: str, code: int) -> None:
    """Print ``rdcodec: error: MESSAGE`` on stderr and exit with ``code``."""
    click.echo(f"rdcodec: error: {message}", err=True)
    sys.exit(code)


def reports_errors(command):
    """Turn a ``CodecError`` into one line on stderr and its exit code; Ctrl-C into 130;
    a ``CodecNotice`` into one ``rdcodec: notice:`` line."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        caught: list = []
        try:
            with warnings.catch_warnings(record=True) as recorded, _terminate_as_interrupt():
                warnings.simplefilter("always", CodecNotice)
                try:
                    return command(*args, **kwargs)
                finally:
                    caught = list(recorded)
        except CodecError as exc:
            _report(caught)
            fail(str(exc), exc.exit_code)
        except Terminated:
            _report(caught)
            fail("terminated", 128 + signal.SIGTERM)
        except KeyboardInterrupt:
            _report(caught)
            fail("interrupted", 130)
        finally:
            _report(caught)

    return wrapper


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is (``_terminate_as_interrupt``)."""


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM as an exception, as Ctrl-C is: the command unwinds, so a temporary file
    is removed and a folder run stops handing out files (the default action would kill
    the process where it stands, leaving its temporary files)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (and only it receives signals)
        return

    def terminate(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        # None: a handler set outside Python (an embedding program), not restorable here.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _report(caught: list) -> None:
    """Print what was recorded while a command ran, once, after the recording ended
    (re-emitting inside it would record the warning again, for ever)."""
    while caught:
        notice = caught.pop(0)
        if issubclass(notice.category, CodecNotice):
            click.echo(f"rdcodec: notice: {notice.message}", err=True)
        else:
            warnings.showwarning(notice.message, notice.category, notice.filename, notice.lineno)


class ParseError(click.ClickException):
    """A bad argument found while click parses, before ``reports_errors`` runs: shown
    as the same one ``rdcodec: error:`` line (click's usage errors take four), with a
    usage error's exit code."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"rdcodec: error: {self.format_message()}", err=True)


class NonEmptyPath(click.Path):
    """``click.Path`` that refuses an empty string: ``Path("")`` is ``Path(".")``, so an
    empty ``--out`` would write into the current folder, an empty DIR read all of it."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value:
            what = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
            raise ParseError(f"{what}: empty path")
        return super().convert(value, param, ctx)


def refuse_empty_paths(command: click.Command) -> click.Command:
    """Make every ``click.Path`` argument and option of ``command`` a ``NonEmptyPath``
    (the group applies it to each command, so no command can forget it)."""
    for param in command.params:
        p = param.type
        if type(p) is click.Path:
            param.type = NonEmptyPath(
                exists=p.exists,
                file_okay=p.file_okay,
                dir_okay=p.dir_okay,
                writable=p.writable,
                readable=p.readable,
                resolve_path=p.resolve_path,
                allow_dash=p.allow_dash,
                path_type=p.type,
                executable=p.executable,
            )
    return command


def fmt_db(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"


def effort_option(help_text: str):
    """``-e/--effort``: the encode effort (0 is the single pass; the levels are checked
    where they are used, so that importing the CLI does not import torch)."""
    return click.option("-e", "--effort", type=int, default=0, show_default=True, help=help_text)


def image_input_options(command):
    """The options of a command that reads an image to code: the model, the pixel limit
    and what to do with transparency."""
    for option in reversed(
        (
            click.option(
                "--model",
                "model_name",
                default=None,
                help="Shipped model name (see `rdcodec models`).",
            ),
            max_pixels_option("Refuse larger images (default 100 MP; at least 1)."),
            click.option(
                "--drop-alpha",
                is_flag=True,
                help="Composite transparency onto white (encode codes it by default; "
                "compare refuses it).",
            ),
        )
    ):
        command = option(command)
    return command


def max_pixels_option(help_text: str):
    """``--max-pixels``: a limit of at least 1 (0 or less would refuse every image, or,
    read as false, fall back to the default unsaid)."""
    return click.option("--max-pixels", type=click.IntRange(min=1), default=None, help=help_text)


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """An ``OSError`` while ``path`` is checked or written (a name too long, a read-only
    or virtual filesystem, a full disk) as one line naming it."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None


def check_output(path: Path, force: bool) -> None:
    """``image_io.check_output``, and a temporary file made and removed beside ``path``:
    an output that cannot be written fails before the work whose result it would hold."""
    from ..atomic import check_writable
    from ..codec import image_io

    with writing(path):
        image_io.check_output(path, force)
        check_writable(path)


def read_bitstream(path: Path) -> bytes:
    """``image_io.read_bitstream``, with an empty file said to be empty (the container
    would call it a bad magic number)."""
    from ..codec import image_io

    data = image_io.read_bitstream(path)
    if not data:
        raise BitstreamError(f"{path}: empty file (0 bytes)")
    return data


@contextlib.contextmanager
def refinement_progress(effort: int, show: bool = True) -> Iterator[None]:
    """A progress bar on stderr for the steps of encode-time refinement (``--effort``,
    minutes at the top level), where stderr is a terminal; nothing otherwise."""
    if not effort or not show or not sys.stderr.isatty():
        yield
        return
    from tqdm import tqdm

    from ..codec import refine

    with tqdm(unit="step", desc=f"effort {effort}", leave=False, file=sys.stderr) as bar:

        def on_step(done: int, steps: int) -> None:
            if done == 1:  # each refinement (a target search may run several) starts a bar
                bar.reset(total=steps)
            bar.update(1)

        with refine.reporting(on_step):
            yield


def parse_level_range(text: str | None) -> list[int] | None:
    """``--qualities LO-HI`` (quality levels) as [lo, hi]; None when not given."""
    if not text:
        return None
    lo, sep, hi = text.partition("-")
    if not sep or not lo.strip().isdigit() or not hi.strip().isdigit() or int(lo) > int(hi):
        raise CodecError(f"--qualities {text}: give a range such as 8-11")
    return [int(lo), int(hi)]
