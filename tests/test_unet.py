import pytest
import torch

from gaussdiff.layers import count_flops, count_params
from gaussdiff.unet import PixelUNet, crop_from_32, pad_to_32, unet_flops


def _t(B, seed=0): return torch.randint(0, 1000, (B,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("channels", [1, 3])
def test_shape(channels):
    m = PixelUNet.smoke(channels=channels).eval()
    x = torch.randn(2, channels, 32, 32)
    assert m(x, _t(2)).shape == (2, channels, 32, 32)


def test_grey_input_on_rgb_model():
    m = PixelUNet.smoke(channels=3).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        y = m(x, _t(2))
        assert y.shape == (2, 1, 32, 32)
        torch.testing.assert_close(y, m(x.expand(-1, 3, -1, -1), _t(2)).mean(1, keepdim=True))


def test_time_conditions_output():
    torch.manual_seed(0)
    m = PixelUNet.smoke().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(): a, b = m(x, torch.tensor([0, 0])), m(x, torch.tensor([999, 999]))
    assert (a - b).abs().max() > 1e-3


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    m = PixelUNet.smoke()
    m(torch.randn(2, 3, 32, 32), _t(2)).pow(2).mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_cpu_preset_runs():
    m = PixelUNet.cpu(channels=1).eval()
    with torch.no_grad(): assert m(torch.randn(1, 1, 32, 32), _t(1)).shape == (1, 1, 32, 32)


def _diffusers_ddpm_cifar10(device="meta"):
    from diffusers import UNet2DModel
    with torch.device(device):
        return UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
                           layers_per_block=2, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=32,
                           dropout=0.1)


def test_paper_preset_is_ddpm_cifar10_as_in_diffusers():
    "Same parameter count and the same FLOPs as diffusers' port of DDPM's CIFAR-10 U-Net (google/ddpm-cifar10-32)."
    with torch.device("meta"): ours = PixelUNet.paper(check_inputs=False)
    ref = _diffusers_ddpm_cifar10()
    assert count_params(ours) == count_params(ref) == 35_746_307
    assert abs(count_params(ours) / 38e6 - 1) < 0.10  # the paper's 38M within ±10 %
    x, t = torch.zeros(1, 3, 32, 32, device="meta"), torch.zeros(1, dtype=torch.long, device="meta")
    assert count_flops(ours, x, t) == count_flops(ref, x, t) == unet_flops(ours)


def test_flop_formula_matches_counter_small():
    m = PixelUNet.smoke()
    x, t = torch.randn(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)
    assert count_flops(m, x, t) == unet_flops(m, batch=2) == 2 * unet_flops(m)
    # one hand-checked term: the input conv alone, 3 -> 16 channels, 3×3, 32×32 outputs
    assert 2 * 3 * 16 * 9 * 32 * 32 == 2 * m.conv_in.weight.numel() * 32 * 32


def test_pad_and_crop():
    x = torch.rand(2, 1, 28, 28)
    p = pad_to_32(x, value=-1.0)
    assert p.shape == (2, 1, 32, 32)
    assert torch.equal(crop_from_32(p), x)
    assert (p[..., :2, :] == -1).all() and (p[..., :, -2:] == -1).all()
    with pytest.raises(ValueError, match="32"): pad_to_32(torch.rand(1, 1, 40, 40))
    with pytest.raises(ValueError, match=r"\[B,C,H,W\]"): pad_to_32(torch.rand(28, 28))


def test_config_rebuilds_same_model():
    m = PixelUNet.smoke(T=200, channels=1)
    m2 = PixelUNet(**m.config); m2.load_state_dict(m.state_dict())
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(m.eval()(x, _t(1) % 200), m2.eval()(x, _t(1) % 200))


def test_bad_input_errors():
    m = PixelUNet.smoke(T=100)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0, 99])
    with pytest.raises(ValueError, match="pad_to_32"): m(torch.randn(2, 1, 28, 28), t)
    with pytest.raises(ValueError, match=r"\[B, 3, 32, 32\]"): m(torch.randn(2, 2, 32, 32), t)
    with pytest.raises(ValueError, match=r"\[B, 3, 32, 32\]"): m(torch.randn(3, 32, 32), t)
    with pytest.raises(ValueError, match="float64"): m(x.double(), t)
    with pytest.raises(ValueError, match="floating"): m(x.long(), t)
    with pytest.raises(ValueError, match="shape"): m(x, torch.tensor([1]))
    with pytest.raises(ValueError, match="integer"): m(x, t.float())
    with pytest.raises(ValueError, match=r"\[0, 100\)"): m(x, torch.tensor([0, 100]))
    with pytest.raises(ValueError, match="channels"): PixelUNet(channels=2)


@pytest.mark.parametrize("channels", [1, 3])
def test_patched_unet_folds_and_unfolds_the_same_pixels(channels):
    "With patch=2 the network sees each 2×2 block as channels and writes its output back to the same pixels."
    m = PixelUNet.smoke(channels=channels, patch=2, attn_resolutions=(8,)).eval()
    x = torch.randn(2, channels, 32, 32)
    seen = {}
    m.conv_in.register_forward_hook(lambda mod, inp, out: seen.update(inp=inp[0]))
    m.conv_out.register_forward_hook(lambda mod, inp, out: seen.update(out=out))
    with torch.no_grad(): y = m(x, _t(2))
    assert y.shape == x.shape and seen["inp"].shape == (2, channels * 4, 16, 16)
    for c in range(channels):
        for a in range(2):
            for b in range(2):
                k = c * 4 + 2 * a + b  # channel of pixel (2i + a, 2j + b) of image channel c
                assert torch.equal(seen["inp"][:, k], x[:, c, a::2, b::2])
                assert torch.equal(seen["out"][:, k], y[:, c, a::2, b::2])


def test_patched_unet_costs_a_quarter_and_keeps_its_size():
    kw = dict(channels=1, base=16, mults=(1, 2, 2), attn_resolutions=(8,), n_classes=10)  # the cpu recipe's MNIST U-Net
    plain, patched = PixelUNet.cpu(**kw), PixelUNet.cpu(patch=2, **kw)
    assert 3.5 < unet_flops(plain) / unet_flops(patched) < 4.0  # the 8×8 attention's share does not shrink with it
    assert 0 < count_params(patched) - count_params(plain) < 0.01 * count_params(plain)  # wider conv_in/out only
    x, t = torch.zeros(1, 1, 32, 32, device="meta"), torch.zeros(1, dtype=torch.long, device="meta")
    with torch.device("meta"): meta = PixelUNet.cpu(patch=2, check_inputs=False, **kw)
    assert count_flops(meta, x, t) == unet_flops(patched)


def test_patch_is_in_the_config_only_when_used():
    "An unpatched U-Net's config, and so its checkpoints' and their resume check, is what it was before `patch`."
    assert "patch" not in PixelUNet.smoke().config and PixelUNet.smoke(patch=1).config == PixelUNet.smoke().config
    m = PixelUNet.smoke(channels=1, patch=2, attn_resolutions=(8,))
    assert m.config["patch"] == 2
    m2 = PixelUNet(**m.config); m2.load_state_dict(m.state_dict())
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(m.eval()(x, _t(1)), m2.eval()(x, _t(1)))


def test_bad_patch_names_the_fix():
    with pytest.raises(ValueError, match="divides image_size 32"): PixelUNet.smoke(patch=3)
    with pytest.raises(ValueError, match="whole number >= 1"): PixelUNet.smoke(patch=0)
    with pytest.raises(ValueError, match="whole number >= 1"): PixelUNet.smoke(patch=1.5)
    with pytest.raises(ValueError, match="fewer mults or a smaller patch"): PixelUNet.paper(patch=8)


def test_unpatched_unet_feeds_its_input_without_a_copy():
    "patch=1 is every pixel model's hot path: no fold, so `conv_in` gets the caller's tensor itself."
    m = PixelUNet.smoke(channels=1).eval()
    x, seen = torch.randn(2, 1, 32, 32), {}
    m.conv_in.register_forward_hook(lambda mod, inp, out: seen.update(inp=inp[0]))
    with torch.no_grad(): m(x, _t(2))
    assert seen["inp"].data_ptr() == x.data_ptr()
