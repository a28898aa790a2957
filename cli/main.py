"""The ``rdcodec`` command: argument parsing and printing only."""

from __future__ import annotations

import click

from .bench import bench
from .codec_commands import decode, encode, info, inspect, models
from .compare import compare
from .measure import rdplane, speed
from .training import export, pack_crops, plot_log, probe, release, train, train_speed

SECTIONS = {
    "Codec": (encode, decode, models, info, inspect),
    "Measure": (bench, compare, rdplane, speed),
    "Training": (train, train_speed, probe, plot_log, export, release, pack_crops),
}


class SectionedGroup(click.Group):
    """``--help`` lists the commands by audience, in the order of SECTIONS."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [c.name for commands in SECTIONS.values() for c in commands]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        width = formatter.width - 6 - max(len(c.name) for c in self.commands.values())
        for title, commands in SECTIONS.items():
            rows = [(c.name, c.get_short_help_str(width)) for c in commands]
            with formatter.section(f"{title} commands"):
                formatter.write_dl(rows)


@click.group(cls=SectionedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rdcodec")
def main() -> None:
    """rdcodec: a learned image codec. Rates and qualities it reports for images are
    measured on real files (the training tools also show the model's own estimates)."""


for section in SECTIONS.values():
    for command in section:
        main.add_command(command)


if __name__ == "__main__":
    main()
