import pytest
import torch
import torch.nn as nn

from gaussdiff.layers import count_flops, count_params, timestep_embedding
from gaussdiff.transformer import (GaussianTransformer, SelfAttention, transformer_flops)


def _inputs(B=3, N=20, F=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, N, F, generator=g), torch.randint(0, 1000, (B,), generator=g)


@pytest.mark.parametrize("cond", ["film", "adaLN-Zero"])
def test_permutation_equivariance(cond):
    torch.manual_seed(0)
    m = GaussianTransformer.smoke(conditioning=cond).eval()
    if cond == "adaLN-Zero":  # zero-init would make the test trivial: randomise the modulation first
        for p in m.parameters(): nn.init.normal_(p, std=0.05) if p.ndim > 1 else None
    x, t = _inputs(N=37)
    perm = torch.randperm(37)
    with torch.no_grad(): y, yp = m(x, t), m(x[:, perm], t)
    assert y.abs().max() > 1e-3
    torch.testing.assert_close(yp, y[:, perm], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("N", [1, 7, 150, 301])
def test_shape_any_n(N):
    m = GaussianTransformer.smoke().eval()
    x, t = _inputs(B=2, N=N)
    assert m(x, t).shape == (2, N, 8)


def test_time_conditions_output():
    torch.manual_seed(0)
    m = GaussianTransformer.smoke().eval()
    x, _ = _inputs(B=2)
    with torch.no_grad():
        a = m(x, torch.tensor([0, 0])); b = m(x, torch.tensor([900, 900]))
    assert (a - b).abs().max() > 1e-2
    # a 0-d t is broadcast over the batch
    with torch.no_grad(): torch.testing.assert_close(m(x, torch.tensor(900)), b)


@pytest.mark.parametrize("cond", ["film", "adaLN-Zero"])
def test_large_inputs_stay_finite(cond):
    m = GaussianTransformer.smoke(conditioning=cond)
    for p in m.parameters(): nn.init.normal_(p, std=0.1) if p.ndim > 1 else None
    x, t = _inputs()
    y = m(x * 1e6, t)
    assert torch.isfinite(y).all()


def test_adaln_zero_starts_as_identity():
    m = GaussianTransformer.smoke(conditioning="adaLN-Zero").eval()
    x, t = _inputs()
    with torch.no_grad():
        h, c = m.inp(x), m.time(t)
        assert torch.equal(m.blocks[0](h, c), h)
        assert torch.equal(m(x, t), torch.zeros_like(x))
    # but it is trainable: a gradient reaches the zero-initialised layers
    m.train(); (m(x, t) - 1).pow(2).sum().backward()
    assert m.out.linear.weight.grad.abs().sum() > 0


def test_attention_matches_torch_multihead():
    torch.manual_seed(0)
    ours = SelfAttention(32, 4).eval()
    ref = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight); ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight); ref.out_proj.bias.copy_(ours.proj.bias)
        x = torch.randn(2, 11, 32)
        torch.testing.assert_close(ours(x), ref(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-5)


def test_timestep_embedding():
    e = timestep_embedding(torch.tensor([0, 5]), 6)
    assert e.shape == (2, 6)
    torch.testing.assert_close(e[0], torch.tensor([1., 1., 1., 0., 0., 0.]))
    assert timestep_embedding(torch.tensor([3]), 7).shape == (1, 7)


def test_paper_preset_matches_text():
    with torch.device("meta"): m = GaussianTransformer.paper()
    c = m.config
    assert (c["d_model"], c["depth"], c["n_heads"], c["mlp_mults"], c["n_features"]) == (512, 8, 8, (2, 4, 2), 8)
    widths = [l.out_features for l in m.blocks[0].mlp.net if isinstance(l, nn.Linear)]
    assert widths == [1024, 2048, 1024, 512]
    assert m.inp.net[0].in_features == 8 and m.out.linear.out_features == 8
    assert 55.0e6 < count_params(m) < 55.5e6  # the text's architecture; the paper's "≈40M" does not fit it


def test_config_rebuilds_same_model():
    m = GaussianTransformer.smoke(conditioning="adaLN-Zero", T=200)
    m2 = GaussianTransformer(**m.config)
    m2.load_state_dict(m.state_dict())
    x, t = _inputs()
    t = t % 200
    torch.testing.assert_close(m(x, t), m2(x, t))


@pytest.mark.parametrize("cond", ["film", "adaLN-Zero"])
def test_flop_counter_matches_formula(cond):
    m = GaussianTransformer.smoke(conditioning=cond)
    x, t = _inputs(B=1, N=40)
    assert count_flops(m, x, t) == transformer_flops(m, 40)
    # by hand for one tiny config: per-token weights, attention, per-image time path
    m = GaussianTransformer(d_model=16, depth=1, n_heads=2, mlp_mults=(2,), t_dim=8, conditioning="film")
    tok = 8 * 16 + 16 * 16 + 16 * 48 + 16 * 16 + 16 * 32 + 32 * 16 + 16 * 8
    per_image = 8 * 16 + 16 * 16 + 16 * 32
    N = 10
    assert count_flops(m, torch.randn(1, N, 8), torch.zeros(1, dtype=torch.long)) == 2 * N * tok + 4 * N * N * 16 + 2 * per_image
    # a batch of B costs B times as much
    assert count_flops(m, torch.randn(3, N, 8), torch.zeros(3, dtype=torch.long)) == 3 * (2 * N * tok + 4 * N * N * 16 + 2 * per_image)


def test_bad_input_errors():
    m = GaussianTransformer.smoke(T=100)
    x, t = _inputs(B=2)
    t = t % 100
    with pytest.raises(ValueError, match=r"\[B, N, 8\]"): m(torch.randn(2, 5, 7), t)
    with pytest.raises(ValueError, match=r"\[B, N, 8\]"): m(torch.randn(10, 8), t)
    with pytest.raises(ValueError, match="floating"): m(torch.ones(2, 5, 8, dtype=torch.long), t)
    with pytest.raises(ValueError, match="float64"): m(x.double(), t)
    with pytest.raises(ValueError, match="shape"): m(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="integer"): m(x, t.float())
    with pytest.raises(ValueError, match=r"\[0, 100\)"): m(x, torch.tensor([0, 100]))
    with pytest.raises(ValueError, match=r"\[0, 100\)"): m(x, torch.tensor([-1, 3]))
    with pytest.raises(ValueError, match="empty"): m(torch.randn(2, 0, 8), t)
    with pytest.raises(ValueError, match="conditioning"): GaussianTransformer.smoke(conditioning="adaln")
    with pytest.raises(ValueError, match="divisible"): GaussianTransformer(d_model=30, n_heads=4)
