"""The ``rdcodec`` command: argument parsing and printing only."""

from __future__ import annotations

import sys
import textwrap

import click

from .bench import bench
from .codec_commands import decode, encode, info, inspect, models
from .common import fail, refuse_empty_paths
from .compare import compare
from .measure import rdplane, speed
from .model_tools import export, plot_log, probe, release
from .training import pack_crops, train, train_speed

SECTIONS = {
    "Codec": (encode, decode, models, info, inspect),
    "Measure": (bench, compare, rdplane, speed),
    "Training": (train, train_speed, probe, plot_log, export, release, pack_crops),
}


# click 8.2 raises it for a group called without a command (older clicks print the help).
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class SectionedGroup(click.Group):
    """``--help`` lists the commands by audience, in the order of SECTIONS; a usage
    error (a misspelt option, a value of the wrong type) is one ``rdcodec: error:``
    line, as every other error is."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _NO_ARGS_IS_HELP as exc:  # `rdcodec` alone: the help, as click prints it
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "rdcodec"
            fail(f"{exc.format_message()} (see `{command} --help`)", exc.exit_code)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:  # Ctrl-C while click reads (a prompt)
            fail("interrupted", 130)
        sys.exit(code if isinstance(code, int) else 0)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [c.name for commands in SECTIONS.values() for c in commands]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        width = formatter.width - 6 - max(len(c.name) for c in self.commands.values())
        for title, commands in SECTIONS.items():
            rows = [(c.name, _short_help(c, width)) for c in commands]
            with formatter.section(f"{title} commands"):
                formatter.write_dl(rows)


# Periods that do not end a sentence (click cuts "Ship WEIGHTS (a .rdw, e.g. RUN/..."
# after "e.g.", since "RUN" is not lowercase).
_ABBREVIATIONS = ("e.g.", "i.e.", "cf.", "vs.")


def _short_help(command: click.Command, width: int) -> str:
    """click's summary of a command (its first sentence, shortened to ``width``), with
    an abbreviation inside that sentence left there."""
    if command.short_help or not command.help:
        return command.get_short_help_str(width)
    words = command.help.partition("\n\n")[0].split()
    for i, word in enumerate(words):
        last = i + 1 == len(words)
        if word.endswith(".") and word.lstrip("(") not in _ABBREVIATIONS:
            if last or not words[i + 1][0].islower():
                words = words[: i + 1]
                break
    return textwrap.shorten(" ".join(words), width, placeholder="...", break_on_hyphens=False)


@click.group(cls=SectionedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rdcodec")
def main() -> None:
    """rdcodec: a learned image codec. Rates and qualities it reports for images are
    measured on real files (the training tools also show the model's own estimates)."""


for section in SECTIONS.values():
    for command in section:
        main.add_command(refuse_empty_paths(command))


if __name__ == "__main__":
    main(prog_name="rdcodec")
