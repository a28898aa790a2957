import math

import torch

from rdcodec.models.training.objective import LevelBalance, rate_distortion


def test_rate_distortion_weights_each_sample():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16)
    out = {
        "x_hat": x + 0.01 * torch.randn_like(x),
        "y_likelihoods": torch.rand(3, 4, 1, 1),
        "z_likelihoods": torch.rand(3, 2, 1, 1),
    }
    lmbda = torch.tensor([0.001, 0.01, 0.1])
    plain = rate_distortion(out, x, lmbda)
    assert torch.allclose(plain["loss"], plain["sample_loss"].mean())
    weights = torch.tensor([3.0, 0.0, 0.0])
    weighted = rate_distortion(out, x, lmbda, weights)
    assert torch.allclose(weighted["loss"], plain["sample_loss"][0])


def test_a_rate_warm_up_charges_part_of_some_channels_bits():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    out = {
        "x_hat": x,
        "y_likelihoods": torch.rand(2, 4, 1, 1),
        "z_likelihoods": torch.ones(2, 2, 1, 1),
    }
    lmbda = torch.tensor([0.01, 0.01])
    plain = rate_distortion(out, x, lmbda)
    warm = rate_distortion(out, x, lmbda, channel_rate=torch.tensor([1.0, 1.0, 0.25, 0.0]))
    assert torch.equal(warm["bpp"], plain["bpp"])  # the reported rate is the whole
    bits = -torch.log2(out["y_likelihoods"])[:, :, 0, 0]
    charged = (bits[:, 0] + bits[:, 1] + 0.25 * bits[:, 2]) / 256
    assert torch.allclose(warm["sample_loss"], charged)


def test_level_balance_evens_out_the_levels():
    balance = LevelBalance(3, decay=0.5)
    levels = torch.tensor([0, 1, 2])
    assert torch.equal(balance.weights(levels), torch.ones(3))  # nothing seen yet
    balance.update(torch.tensor([0, 2]), torch.tensor([1.0, 4.0]))
    w = balance.weights(levels)
    # level 1 is unseen: it counts as the mean of the seen ones (2.5)
    assert torch.allclose(w * torch.tensor([1.0, 2.5, 4.0]), torch.full((3,), w[0].item()))
    assert math.isclose(w.mean().item(), 1.0, rel_tol=1e-6)
    balance.update(torch.tensor([2]), torch.tensor([2.0]))
    assert math.isclose(balance.mean_loss[2].item(), 3.0)  # the mean of its first two
    balance.update(torch.tensor([2]), torch.tensor([5.0]))
    assert math.isclose(balance.mean_loss[2].item(), 4.0)  # then exponential (decay 0.5)
    resumed = LevelBalance(3, decay=0.5, state=balance.state_dict())
    assert torch.equal(resumed.weights(levels), balance.weights(levels))
