"""The codec path's own layers compute what compressai's training modules compute, from the
same parameters (weight files load into either; ``models/layers.py``)."""

from __future__ import annotations

import pytest
import torch

from rdcodec.models import gaussian, layers

compressai = pytest.importorskip("compressai")


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_matches_compressai(inverse):
    from compressai.layers import GDN

    torch.manual_seed(0)
    reference = GDN(6, inverse=inverse)
    with torch.no_grad():  # trained-looking raw (reparametrised) values
        reference.beta.uniform_(0.5, 2.0)
        reference.gamma.uniform_(0.0, 0.3)
    ours = layers.GDN(6, inverse=inverse)
    ours.load_state_dict({k: reference.state_dict()[k] for k in ("beta", "gamma")})
    x = torch.randn(2, 6, 9, 11) * 3
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), rtol=1e-5, atol=1e-6)


def test_frozen_inverse_gdn_backward_is_autograds():
    """Refinement's IGDN backward (frozen beta and gamma) gives autograd's gradient to x
    and leaves the forward's arithmetic as it was, bit for bit."""
    torch.manual_seed(2)
    frozen = layers.GDN(6, inverse=True)
    with torch.no_grad():
        frozen.beta.uniform_(0.5, 2.0)
        frozen.gamma.uniform_(0.0, 0.3)
    trainable = layers.GDN(6, inverse=True)
    trainable.load_state_dict(frozen.state_dict())
    frozen.requires_grad_(False)
    x = (torch.randn(2, 6, 9, 11, dtype=torch.float64) * 3).requires_grad_(True)
    assert torch.autograd.gradcheck(frozen.double(), (x,))
    x32 = x.detach().float().requires_grad_(True)
    weights = torch.randn(2, 6, 9, 11)
    grads = []
    for gdn in (frozen.float(), trainable):
        out = gdn(x32)
        (out * weights).sum().backward()
        grads.append((out.detach(), x32.grad))
        x32.grad = None
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-6)
    assert frozen(x32).grad_fn.name().startswith("_InverseGDN")


def test_factorized_density_matches_the_entropy_bottleneck():
    from compressai.entropy_models import EntropyBottleneck

    torch.manual_seed(1)
    reference = EntropyBottleneck(5)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    ours = layers.FactorizedDensity(5)
    state = {k: v for k, v in reference.state_dict().items() if k in ours.state_dict()}
    assert state.keys() == ours.state_dict().keys()
    ours.load_state_dict(state)
    values = torch.randint(-20, 21, (5, 1, 300)).float()
    with torch.no_grad():
        expected = reference._likelihood(values)[0].clamp(min=layers.LIKELIHOOD_BOUND)
        assert torch.allclose(ours.likelihood(values), expected, rtol=1e-5, atol=1e-9)
        assert torch.equal(ours.medians(), reference.quantiles[:, 0, 1])


def test_gaussian_likelihood_matches_the_gaussian_conditional():
    from compressai.entropy_models import GaussianConditional

    torch.manual_seed(2)
    reference = GaussianConditional(None, scale_bound=gaussian.SCALE_MIN)
    means = torch.randn(1, 8, 6, 7) * 4
    scales = torch.rand(1, 8, 6, 7) * 20  # some below the bound
    values = torch.round(means + torch.randn_like(means) * scales)
    expected = reference._likelihood(values, scales, means).clamp(min=gaussian.LIKELIHOOD_BOUND)
    assert torch.allclose(gaussian.likelihood(values, scales, means), expected, rtol=1e-5)
