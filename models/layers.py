"""The few layers the codec path needs, without compressai.

compressai's package import takes seconds (it pulls in torchvision, torch_geometric,
pandas, scipy and torch._dynamo), which would be most of every ``rdcodec decode``.
Coding needs only the forward functions of two of its modules (the Gaussian
conditional's likelihood lives with the rest of the y model in ``models/gaussian.py``),
so they are here, with the same parameter names (weight files load into either) and
the same formulas:

- :class:`GDN`: generalized divisive normalization (Ballé et al. 2016), with
  compressai's non-negative reparametrisation of beta and gamma applied once.
- :class:`FactorizedDensity`: the z prior of the entropy bottleneck (Ballé et al.
  2018, appendix 6.1): its medians and its likelihood, for the rate estimate.

Training keeps compressai's modules (they also train: the lower-bound gradients, the
quantiles' aux loss), see ``models/trainable.py``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# compressai's NonNegativeParametrizer: value = max(p, sqrt(minimum + pedestal))**2 - pedestal
_PEDESTAL = (2.0**-18) ** 2
BETA_MIN = 1e-6
LIKELIHOOD_BOUND = 1e-9


def _non_negative(p: Tensor, minimum: float = 0.0) -> Tensor:
    return torch.clamp(p, min=math.sqrt(minimum + _PEDESTAL)) ** 2 - _PEDESTAL


class GDN(nn.Module):
    """y = x / sqrt(beta + gamma * x^2) (or x * sqrt(...) for the inverse, IGDN)."""

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(0.1 * torch.eye(channels))

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        beta = _non_negative(self.beta, BETA_MIN)
        gamma = _non_negative(self.gamma).reshape(c, c, 1, 1)
        if self.inverse and x.requires_grad and not (beta.requires_grad or gamma.requires_grad):
            # Encode-time refinement backpropagates through a frozen g_s: a backward pass
            # of its own, four passes over the activations instead of autograd's nine.
            return _InverseGDN.apply(x, gamma, beta)
        norm = F.conv2d(x * x, gamma, beta)
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


class _InverseGDN(torch.autograd.Function):
    """IGDN with frozen beta and gamma: the same forward arithmetic as ``GDN``, and the
    gradient to x only, dx_k = g_k s_k + x_k sum_c gamma_ck g_c x_c / s_c, where
    s = sqrt(beta + gamma x^2)."""

    @staticmethod
    def forward(ctx, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        s = torch.sqrt(F.conv2d(x * x, gamma, beta))
        ctx.save_for_backward(x, s, gamma)
        return x * s

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, s, gamma = ctx.saved_tensors
        weighted = torch.mul(grad, x).div_(s)
        spread = F.conv2d(weighted, gamma.transpose(0, 1).to(weighted.dtype))
        return torch.addcmul(grad * s, x, spread), None, None


class FactorizedDensity(nn.Module):
    """The entropy bottleneck's learned per-channel density of z, for coding: the
    medians z is quantised around and the likelihood of quantised values."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3, 3)) -> None:
        super().__init__()
        dims = (1, *filters, 1)
        self.matrices = nn.ParameterList(
            nn.Parameter(torch.zeros(channels, dims[i + 1], dims[i])) for i in range(len(dims) - 1)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(channels, dims[i + 1], 1)) for i in range(len(dims) - 1)
        )
        self.factors = nn.ParameterList(
            nn.Parameter(torch.zeros(channels, dims[i + 1], 1)) for i in range(len(filters))
        )
        self.quantiles = nn.Parameter(torch.zeros(channels, 1, 3))

    def medians(self) -> Tensor:
        return self.quantiles[:, 0, 1].detach()

    def _logits_cumulative(self, x: Tensor) -> Tensor:
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(matrix), x) + bias
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, values: Tensor) -> Tensor:
        """P(value) of quantised values laid out (C, 1, n), bounded below."""
        lower = self._logits_cumulative(values - 0.5)
        upper = self._logits_cumulative(values + 0.5)
        p = torch.sigmoid(upper) - torch.sigmoid(lower)
        return torch.clamp(p, min=LIKELIHOOD_BOUND)


def derived(owner: nn.Module, key, params, build):
    """``build()``, kept on ``owner`` (under ``key``) until one of ``params`` changes,
    in place or replaced: weights derived from frozen parameters (a channels-last copy,
    weights rounded to a grid) are made once, not at every call."""
    version = tuple((id(p), p._version) for p in params)
    store = owner.__dict__.setdefault("_derived", {})
    hit = store.get(key)
    if hit is None or hit[0] != version:
        hit = store[key] = (version, build())
    return hit[1]
