"Chapter 08a (gaussdiff.edit): editing generated GIRs keeps the geometry right and touches only the selection."
import math

import pytest
import torch

from gaussdiff.edit import edit_splats, edit_widget, select_splats
from gaussdiff.splats import make_splats


def _gir(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, 8, generator=g)
    s[:, 2:5] = torch.randn(n, 3, generator=g) * 0.5 - 2
    return s


def _sigma(s):
    L = torch.zeros(*s.shape[:-1], 2, 2)
    L[..., 0, 0], L[..., 1, 0], L[..., 1, 1] = s[..., 2].exp(), s[..., 3], s[..., 4].exp()
    return L @ L.transpose(-1, -2)


def test_edit_splats_geometry():
    s = _gir()
    torch.testing.assert_close(edit_splats(s, rotate=360.0), s, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(edit_splats(s), s)
    shifted = edit_splats(s, shift=(0.1, -0.2))
    torch.testing.assert_close(shifted[:, :2] - s[:, :2], torch.tensor([[0.1, -0.2]]).expand(5, 2))
    scaled = edit_splats(s, scale=2.0)
    torch.testing.assert_close(_sigma(scaled), 4 * _sigma(s), rtol=1e-4, atol=1e-7)
    # an axis-aligned splat, wide along x, to the right of the centre: rotating 90° (from x towards y, clockwise on
    # screen with y pointing down) moves it below the centre and makes it tall
    one = torch.tensor([[0.7, 0.5, math.log(0.2), 0.0, math.log(0.05), 1, 1, 1.0]])
    r = edit_splats(one, rotate=90.0, centre=(0.5, 0.5))
    torch.testing.assert_close(r[0, :2], torch.tensor([0.5, 0.7]), rtol=0, atol=1e-6)
    torch.testing.assert_close(_sigma(r)[0], torch.diag(torch.tensor([0.05 ** 2, 0.2 ** 2])), rtol=1e-4, atol=1e-8)


def test_edit_splats_turns_like_make_splats():
    "One angle convention: rotate=d degrees turns a splat the way make_splats' angle radians(d) does (x towards y)."
    for deg, centre in ((30.0, None), (-75.0, (0.3, 0.6))):
        flat = make_splats([0.5, 0.4], 0.12, 0.03)  # angle 0: wide along x
        turned = make_splats([0.5, 0.4], 0.12, 0.03, math.radians(deg))
        if centre is not None:  # about another point the centre moves the same way: by R(deg) about it
            th, c = math.radians(deg), torch.tensor(centre)
            turned[:2] = c + torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]]) @ (turned[:2] - c)
        torch.testing.assert_close(edit_splats(flat[None], rotate=deg, centre=centre)[0], turned, rtol=1e-4, atol=1e-5)


def test_edit_splats_selection_and_colour():
    s = _gir(8)
    s[:, 0] = torch.linspace(0.05, 0.95, 8)
    mask = select_splats(s, box=(0.0, 0.0, 0.5, 1.0))
    assert mask.tolist() == [True] * 4 + [False] * 4
    red = edit_splats(s, mask, colour=(1, 0, 0))
    torch.testing.assert_close(red[4:], s[4:])
    assert (red[:4, 6:8] == 0).all()
    torch.testing.assert_close(red[:4, 5:8].mean(-1), s[:4, 5:8].mean(-1))  # brightness kept
    with pytest.raises(ValueError, match="scale"): edit_splats(s, scale=0)
    with pytest.raises(ValueError, match="N,8"): edit_splats(s[:, :5])


def test_edit_widget_builds_and_rerenders():
    pytest.importorskip("ipywidgets")
    import matplotlib
    matplotlib.use("Agg")
    w = edit_widget(_gir(12), size=(16, 16))
    controls = w.children[0].children
    assert len(controls) == 8
    view = w.children[1].children[0]
    before = view.value
    assert before[:8] == b"\x89PNG\r\n\x1a\n"
    controls[2].value = 0.1  # shift x: the edited half is drawn again
    assert view.value != before
    with pytest.raises(ValueError, match="one GIR"): edit_widget(_gir(3)[None])


@pytest.mark.parametrize("kw,name", [(dict(scale=float("inf")), "scale"), (dict(rotate=float("nan")), "rotate"),
                                     (dict(shift=(float("nan"), 0.0)), "shift"), (dict(brightness=float("nan")), "brightness"),
                                     (dict(colour=(1, 0)), "colour"), (dict(centre=(0.5,)), "centre"),
                                     (dict(mask=torch.ones(3, dtype=torch.bool)), "mask")])
def test_edit_refuses_bad_settings_naming_the_argument(kw, name):
    "Issue 27 (17): each bad setting is a ValueError that starts with its name (not a LinAlgError, NaN splats or a broadcast error)."
    with pytest.raises(ValueError, match=f"^{name} "): edit_splats(_gir(5), **kw)


def test_edit_refuses_nan_splats():
    s = _gir(5)
    s[2, 3] = float("nan")
    with pytest.raises(ValueError, match="^splats .*NaN"): edit_splats(s, scale=2.0)
