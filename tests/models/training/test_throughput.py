"""Training throughput rows (``rdcodec train-speed``) on a tiny network."""

import json

import pytest
from click.testing import CliRunner

from rdcodec.cli.main import main
from rdcodec.models.training import throughput


def test_row_describes_the_measured_configuration():
    row = throughput.measure(8, 12, 64, 2, 1, "channels_last", steps=2)
    assert (row.N, row.M, row.crop, row.batch_size, row.mode) == (8, 12, 64, 2, "channels_last")
    assert row.seconds_per_step > 0 and row.warmup_seconds > 0
    assert row.sampler_ms_per_batch > 0 and row.jpeg_decode_ms_per_batch > 0


def test_unknown_mode_is_refused_before_starting_a_process():
    with pytest.raises(ValueError, match="unknown mode"):
        throughput.measure(8, 12, 64, 2, 1, "fast")


@pytest.mark.slow  # about 15 s on a free machine, and it checks only the rows' shape
def test_cli_prints_one_row_per_combination():
    args = ["train-speed", "--arch", "8,12", "--crop", "64", "--crop", "128", "--steps", "1"]
    args += ["--arch", "8,12,3"]  # and the exact model with a 3-slice channel context
    result = CliRunner().invoke(main, [*args, "--mode", "eager", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["crop"], r["slices"]) for r in rows] == [(64, 1), (128, 1), (64, 3), (128, 3)]


@pytest.mark.parametrize(
    "args",
    [["--arch", "8"], ["--arch", "a,b"], ["--arch", "8,12,5"], ["--crop", "32"], ["--crop", "100"]],
)
def test_cli_rejects_bad_shapes(args):
    result = CliRunner().invoke(main, ["train-speed", *args])
    assert result.exit_code != 0
    assert result.output.startswith("rdcodec: error:") and len(result.output.splitlines()) == 1
