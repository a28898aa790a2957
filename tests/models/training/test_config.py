"""The run's configuration and the plan of its architecture, without click or torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rdcodec.models.training.config import DEFAULT_ARCH, TrainConfig, plan_architecture

SHIPPED = {"N": 96, "M": 128, "levels": 11, "exact": True, "slices": 4}


def test_the_default_architecture_is_the_shipped_transforms():
    from rdcodec.models.network import ModelConfig

    assert ModelConfig(96, 128).to_dict() == DEFAULT_ARCH == TrainConfig().arch


def test_a_plain_warm_start_keeps_the_architecture():
    plan = plan_architecture(SHIPPED)
    assert plan.arch == SHIPPED and plan.rate_warmup_from is None
    assert plan_architecture(SHIPPED, resumed=SHIPPED).arch == SHIPPED


def test_growing_a_float_model_into_an_exact_context_model_with_more_levels():
    plan = plan_architecture(DEFAULT_ARCH, exact=True, levels=11, slices=4)
    assert plan.arch == {"N": 96, "M": 128, "levels": 11, "exact": True, "slices": 4}


def test_widening_a_context_model_adds_whole_slices_and_warms_their_rate_up():
    plan = plan_architecture(SHIPPED, widen=192, rate_warmup=2000)
    assert plan.arch["M"] == 192 and plan.arch["slices"] == 6  # slices of 32 channels
    assert plan.rate_warmup_from == 128  # the first new channel


def test_widening_the_transforms_keeps_the_hyperprior():
    plan = plan_architecture(SHIPPED, widen_transforms=128)
    assert plan.arch == {**SHIPPED, "G": 128}
    assert plan_architecture(plan.arch, resumed=plan.arch).arch["G"] == 128
    # The same command resumes its run (the warm start is then the run's own G).
    again = plan_architecture(plan.arch, widen_transforms=128, resumed=plan.arch)
    assert again.arch == plan.arch
    assert plan_architecture(SHIPPED, widen_transforms=96).arch == SHIPPED  # N wide: no G


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"widen": 100}, "more channels than the warm start's M"),
        ({"widen": 144}, "not a multiple of the slice width 32"),
        ({"widen": 192, "slices": 4}, "needs --slices 6"),
        ({"rate_warmup": 10}, "give --widen"),
        ({"levels": 11, "resumed": {**SHIPPED, "levels": 8}}, "another architecture"),
        ({"from_scratch": True, "widen": 192}, "more channels"),
        ({"widen_transforms": 95}, "at least the warm start's g_a/g_s channels"),
        ({"from_scratch": True, "widen_transforms": 128}, "leave out --from-scratch"),
    ],
)
def test_impossible_plans_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        plan_architecture(SHIPPED, **options)


def test_the_cli_takes_its_defaults_from_the_config_and_help_imports_no_torch():
    from rdcodec.cli.training import train

    defaults = {p.name: p.default for p in train.params}
    config = TrainConfig()
    for name in ("steps", "batch_size", "crop", "lr", "gain_lr_scale", "ema_decay"):
        assert defaults[name] == getattr(config, name), name
    assert defaults["level_weighting"] == config.level_weighting
    code = (
        "import sys; from click.testing import CliRunner; from rdcodec.cli.main import main; "
        "r = CliRunner().invoke(main, ['train', '--help']); "
        "assert r.exit_code == 0 and '10000' in r.output, r.output; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
