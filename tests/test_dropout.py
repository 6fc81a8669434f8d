"""taomm's CPU dropout: nn.Dropout's contract with a cheaper mask."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from taomm.model import InterBertConfig, InterBertModel
from taomm.model.modeling import Dropout, InterBertAttention


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_drops_p_of_the_elements_and_keeps_the_mean(p):
    torch.manual_seed(0)
    y = Dropout(p).train()(torch.ones(2_000_000))
    assert abs(float((y == 0).float().mean()) - p) < 0.002
    assert abs(float(y.mean()) - 1.0) < 0.005  # kept elements scaled by 1 / keep probability
    assert y.unique().tolist() == [0.0, pytest.approx(1 / (1 - round(p * 65536) / 65536))]


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), p=st.floats(0.01, 0.99),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]), seed=st.integers(0, 2**31 - 1))
def test_output_is_zero_or_the_scaled_input_with_the_input_shape(shape, p, dtype, seed):
    torch.manual_seed(seed)
    x = torch.randn(shape).to(dtype)
    y = Dropout(p).train()(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    kept = y != 0
    scale = torch.tensor(1 / (1 - round(p * 65536) / 65536), dtype=dtype)
    assert torch.equal(y[kept], x[kept] * scale)


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(1)
    x = torch.randn(1000, 17, requires_grad=True)
    y = Dropout(0.2).train()(x)
    y.sum().backward()
    scale = 1 / (1 - round(0.2 * 65536) / 65536)
    assert torch.allclose(x.grad, (y != 0).float() * scale)


def test_the_seed_fixes_the_mask_and_another_seed_changes_it():
    x = torch.ones(4096)
    torch.manual_seed(3)
    first = Dropout(0.1).train()(x)
    torch.manual_seed(3)
    again = Dropout(0.1).train()(x)
    torch.manual_seed(4)
    other = Dropout(0.1).train()(x)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_evaluation_p_0_and_p_1_are_nn_dropouts():
    x = torch.randn(64, 8)
    assert torch.equal(Dropout(0.1).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_the_model_uses_it_and_evaluation_is_deterministic():
    cfg = InterBertConfig.from_preset("tiny", vocab_size=50)
    model = InterBertModel(cfg)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(isinstance(m, Dropout) for m in dropouts)
    ids = torch.randint(1, 50, (2, 6))
    model.eval()
    first = model(input_ids=ids, attention_mask=torch.ones_like(ids, dtype=torch.bool)).text_cls
    second = model(input_ids=ids, attention_mask=torch.ones_like(ids, dtype=torch.bool)).text_cls
    assert torch.equal(first, second)
    model.train()
    noisy = model(input_ids=ids, attention_mask=torch.ones_like(ids, dtype=torch.bool)).text_cls
    assert not torch.equal(first, noisy)


def test_attentions_cpu_training_path_is_sdpa_without_the_draws():
    cfg = InterBertConfig.from_preset("tiny", vocab_size=50)
    attention = InterBertAttention(cfg)
    x = torch.randn(3, 7, cfg.hidden_size)
    mask = torch.ones(3, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., 4:] = False  # padding
    want = attention.eval()(x, mask)  # scaled_dot_product_attention
    attention.train()
    attention.dropout.p = attention.probs_dropout.p = 0.0  # the training path, with nothing dropped
    assert attention.attn_dropout > 0
    assert torch.allclose(attention(x, mask), want, atol=1e-6)
    attention.probs_dropout.p = 0.5
    torch.manual_seed(0)
    assert not torch.allclose(attention(x, mask), want, atol=1e-3)  # the probabilities' dropout is on that path
