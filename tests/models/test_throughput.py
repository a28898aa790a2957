"""Training throughput rows (``rdcodec train-speed``) on a tiny network."""

import json

import pytest
from click.testing import CliRunner

from rdcodec.cli.main import main
from rdcodec.models import throughput


def test_row_is_consistent():
    row = throughput.measure(8, 12, 64, 2, 1, "channels_last", steps=2)
    assert row.seconds_per_step > 0
    assert row.pixels_per_second == pytest.approx(2 * 64 * 64 / row.seconds_per_step)
    assert row.sampler_ms_per_batch > 0 and row.jpeg_decode_ms_per_batch > 0
    assert (row.N, row.M, row.crop, row.mode) == (8, 12, 64, "channels_last")


def test_cli_prints_one_row_per_combination():
    args = ["train-speed", "--arch", "8,12", "--crop", "64", "--crop", "128", "--steps", "1"]
    result = CliRunner().invoke(main, [*args, "--mode", "eager", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["crop"] for r in rows] == [64, 128]


@pytest.mark.parametrize("args", [["--arch", "8"], ["--arch", "a,b"], ["--crop", "32"]])
def test_cli_rejects_bad_shapes(args):
    result = CliRunner().invoke(main, ["train-speed", *args])
    assert result.exit_code != 0
    assert result.output.startswith("rdcodec: error:") and len(result.output.splitlines()) == 1
