"""``python -m rdcodec``: the ``rdcodec`` command."""

from .cli.main import main

main(prog_name="rdcodec")
