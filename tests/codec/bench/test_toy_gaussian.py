"""The toy Gaussian codec against Shannon's R(D): how far above the bound the codec
path (transforms -> rounding -> Gaussian tables -> constriction) really codes."""

import pytest
import torch

from rdcodec.codec.bench.toy import HIGH_RATE_GAP, evaluate_toy
from rdcodec.models.training.toy import ToyConfig, train_toy

# 16384 vectors of 8 dimensions: 131072 coded symbols, enough to bring the sampling
# noise of the measured gap down to 0.0025 bit (standard deviation over 12 test seeds).
SAMPLES = 16384

# What the gap may contain above the space-filling loss 1/2 log2(2 pi e / 12) = 0.2546:
# * finite rate: by numerical integration, rounding y = a*x with a linear decoder loses
#   0.2546 to within 1e-4 bit at every rate from 2 to 4.6 bits, so nothing to add here;
# * table choice: the coder codes with the nearest of 64 tables whose scales are a
#   factor 1.131 apart; a scale off by at most half a step (e^0.0615) costs at most
#   ~0.0055 bit (KL between the Gaussians; 0.004 at lmbda=160, 0.0001 at 40);
# * integer tables: 16-bit counts, each at least 1, plus the escape symbol; the KL
#   from the exact pmf is < 0.0005 bit at scales 1-5 (computed), allow 0.002 bit;
# * the coder's flush: at most 64 bits of ANS state plus word padding over 131072
#   symbols: < 0.001 bit;
# * the learned transforms: g_a not exactly a scaled rotation (correlated latents are
#   coded as if independent: measured total correlation ~1e-6 bit/dim) and g_s not
#   exactly the Wiener decoder (0.2 % off in norm); allow 0.01 bit;
# * sampling noise of the test set: 8 standard deviations (margin for another
#   machine's arithmetic training a slightly different model), 0.02 bit.
# Sum: 0.2546 + 0.0055 + 0.002 + 0.001 + 0.01 + 0.02 = 0.293, rounded up to 0.30.
# A gap beyond it means the code path wastes bits the theory says it need not.
# (Over 12 test seeds the gap measured 0.2548 +- 0.0025 at lmbda=40 and
# 0.2595 +- 0.0026 at lmbda=160, 0.004 of it the nearest table scale being 5 % off.)
GAP_BOUND = 0.30

# The gap cannot fall below the space-filling loss by more than sampling noise: the
# integration above gives 0.2546 for this quantiser at these rates, and mismatched
# tables only add. A lower gap means the rate or the distortion is miscounted.
GAP_FLOOR = HIGH_RATE_GAP - 0.02


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# lmbda 40 codes ~3.15 bits per dimension, lmbda 160 ~4.1: the high-rate regime.
@pytest.mark.parametrize("lmbda", [40.0, 160.0])
def test_gap_to_shannon_bound(lmbda):
    config = ToyConfig(dim=8, sigma=1.0, lmbda=lmbda, steps=2000, seed=0)
    result = evaluate_toy(train_toy(config), config, samples=SAMPLES, seed=1)
    summary = (
        f"lmbda={lmbda:g}: rate {result.rate:.4f} bit/dim "
        f"(tables' -log2 p {result.table_rate:.4f}), MSE {result.distortion:.6f}, "
        f"R(D) {result.shannon_rate:.4f}, gap {result.gap:.4f} bit/dim "
        f"(high-rate scalar quantisation: {result.quantization_gap:.4f})"
    )
    print(summary)

    assert result.exact, "decoded symbols differ from the coded ones"
    assert 2.5 < result.rate < 5, f"not in the high-rate regime the bound is for: {summary}"
    # No free lunch: no code beats R(D); the small tolerance is the test set's luck.
    assert result.gap > -0.01, f"rate below Shannon's bound: {summary}"
    assert result.gap > GAP_FLOOR, f"gap below scalar quantisation's: {summary}"
    assert result.gap < GAP_BOUND, f"gap above {GAP_BOUND}: {summary}"
