import math

import pytest
import torch

from opspec.training.metrics import relative_l2


def test_relative_l2_matches_hand_computation():
    true = torch.tensor([[[3.0, 4.0]], [[1.0, 0.0]]])  # norms 5 and 1
    pred = torch.tensor([[[3.0, 0.0]], [[0.0, 0.0]]])  # errors 4 and 1
    assert torch.allclose(relative_l2(pred, true), torch.tensor([4 / 5, 1.0]))


def test_relative_l2_is_per_sample_over_all_non_batch_axes():
    torch.manual_seed(0)
    true = torch.randn(3, 2, 5, 6)
    pred = true + 0.1 * torch.randn(3, 2, 5, 6)
    got = relative_l2(pred, true)
    for i in range(3):
        num = math.sqrt(float(((pred[i] - true[i]) ** 2).sum()))
        den = math.sqrt(float((true[i] ** 2).sum()))
        assert got[i].item() == pytest.approx(num / den, rel=1e-5)


def test_relative_l2_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        relative_l2(torch.zeros(2, 3), torch.zeros(2, 4))
