"Chapter 09c (gaussdiff.spritemetric): the quarter swap, tangles, the three thirds, the cached net, and a metric that sees a tangle."
import pytest
import torch

from gaussdiff.data import load_sprites
from gaussdiff.fit import fit_splats
from gaussdiff.metrics import pixel_kid
from gaussdiff.splats import render
import gaussdiff.spritemetric as SM
from gaussdiff.spritemetric import (QUARTER_ORDERS, SPRITE_NET_PRESETS, get_sprite_net, halves_batch,
                                    pretext_batch, sprite_kid, sprite_net_path, sprite_split, swap_halves,
                                    swap_quarters, tangle)

TINY = dict(width=4, feat_dim=8, epochs=1, batch_size=16)


def test_swap_quarters_moves_whole_quarters_and_the_identity_keeps_the_image():
    x = torch.arange(2 * 3 * 4 * 4.).reshape(2, 3, 4, 4)
    assert torch.equal(swap_quarters(x, torch.tensor([0, 0])), x)
    y = swap_quarters(x, torch.tensor([QUARTER_ORDERS.index([3, 2, 1, 0]), QUARTER_ORDERS.index([1, 0, 2, 3])]))
    assert torch.equal(y[0, :, :2, :2], x[0, :, 2:, 2:]) and torch.equal(y[0, :, 2:, 2:], x[0, :, :2, :2])
    assert torch.equal(y[1, :, :2, :2], x[1, :, :2, 2:]) and torch.equal(y[1, :, 2:], x[1, :, 2:])  # top swapped only
    for k in range(24):  # every order is a permutation of the same pixels
        assert torch.equal(swap_quarters(x, torch.tensor([k, k])).flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)


def test_pretext_batch_is_seeded_and_answers_match_the_images():
    x = load_sprites(None, verbose=False)[:12]
    a, b = (pretext_batch(x, torch.Generator().manual_seed(3), blur=0) for _ in range(2))
    assert torch.equal(a.images, b.images) and torch.equal(a.rotation, b.rotation) and torch.equal(a.order, b.order)
    assert a.images.shape == x.shape and set(a.rotation.tolist()) <= {0, 1, 2, 3} and max(a.order.tolist()) < 24
    assert (a.order == 0).sum() >= 1  # about half keep their layout


def test_tangle_keeps_every_slots_splats_and_mixes_images():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(50, 16, 8, generator=g)
    t = tangle(s, seed=1)
    assert t.shape == s.shape and torch.equal(t, tangle(s, seed=1)) and not torch.equal(t, tangle(s, seed=2))
    for j in range(16):  # slot j holds the same splats, in another order
        assert torch.equal(t[:, j].sort(0).values, s[:, j].sort(0).values)
    same = (t[:, None] == s[None]).all(-1)  # [B_t, B_s, N]: is splat n of t[b] splat n of s[b']?
    donors = same.float().argmax(1)         # [B_t, N]: the image each splat came from
    assert sum(len(set(d.tolist())) for d in donors) / len(donors) > 10  # ~14 distinct donors of 16 splats


def test_sprite_split_is_three_disjoint_seeded_thirds():
    x = torch.rand(100, 3, 32, 32)
    s = sprite_split(x, seed=0)
    assert (len(s.reference), len(s.real), len(s.train)) == (33, 33, 34)
    rows = lambda t: {tuple(r.flatten()[:6].tolist()) for r in t}
    assert not (rows(s.reference) & rows(s.real)) and not (rows(s.real) & rows(s.train))
    assert not (rows(s.reference) & rows(s.train))
    assert torch.equal(sprite_split(x, seed=0).reference, s.reference) and not torch.equal(sprite_split(x, 1).reference,
                                                                                            s.reference)
    assert len(sprite_split(x, cap=10).train) == 80
    with pytest.raises(ValueError, match="at least 30 sprites"): sprite_split(x[:20])


def test_sprite_net_cache_reloads_refuses_other_settings_and_rebuilds_a_corrupt_file(tmp_data, capsys):
    split = sprite_split(load_sprites(None, verbose=False)[:90])
    net = get_sprite_net(split, TINY, verbose=False)
    path = sprite_net_path(split.train, TINY)
    assert path.exists() and oct(path.stat().st_mode & 0o777) != "0o600"
    SM._NETS.clear()
    again = get_sprite_net(split, TINY, verbose=False)
    assert torch.equal(again.features(split.real[:4]), net.features(split.real[:4]))
    assert sprite_net_path(split.train, dict(TINY, epochs=2)) != path  # other settings: another file
    assert sprite_net_path(split.train[1:], TINY) != path               # other sprites: another file
    path.write_bytes(b"not a checkpoint")
    SM._NETS.clear()
    rebuilt = get_sprite_net(split, TINY)
    assert "is invalid (unreadable" in capsys.readouterr().out and torch.isfinite(rebuilt.feat_std).all()
    torch.save({"format": SM.SPRITE_NET_FORMAT, "settings": dict(SM.sprite_net_settings(TINY), epochs=9)}, path)
    with pytest.raises(ValueError, match="settings"): SM._read_sprite_net(path, SM.sprite_net_settings(TINY))


def test_sprite_kid_sees_the_tangles_pixel_kid_scores_as_real(tmp_data, one_torch_thread):
    """Issue 28: pixel KID cannot tell a tangle (real splats from different sprites) from the fits; sprite-feature KID
    must put the tangles far past the fits and the unseen real sprites near zero."""
    split = sprite_split(load_sprites(None, verbose=False), seed=0)
    fit = fit_splats(split.real[:160], n_splats=64, steps=60, seed=0, progress=False)
    fits, tangles = render(fit.splats, (32, 32), 3), render(tangle(fit.splats, seed=0), (32, 32), 3)
    net = get_sprite_net(split, "default", verbose=False)
    kid = {name: sprite_kid(split.reference, imgs, net, subsets=20, subset_size=80)
           for name, imgs in [("real", split.real[160:320]), ("fits", fits), ("tangles", tangles)]}
    px = {name: pixel_kid(split.reference, imgs, subsets=20, subset_size=80)[0]
          for name, imgs in [("fits", fits), ("tangles", tangles)]}
    assert px["tangles"] < 1.5 * px["fits"]  # the blind spot this metric exists for
    assert kid["tangles"][0] > 3 * kid["fits"][0] and kid["tangles"][0] > kid["real"][0] + 5 * kid["real"][1]
    assert abs(kid["real"][0]) < kid["tangles"][0] / 5


def test_swap_halves_gives_about_half_the_images_another_images_right_half():
    "Issue 28: the third question's answers match the images it builds."
    x = torch.rand(64, 3, 8, 8)
    a, same = swap_halves(x, torch.Generator().manual_seed(1))
    b, same_b = swap_halves(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(same, same_b)          # seeded
    assert torch.equal(a[..., :4], x[..., :4])                         # left halves never move
    kept = same.bool()
    assert torch.equal(a[kept], x[kept]) and 20 < int((~kept).sum()) < 44
    for img in a[~kept]:                                               # each swapped right half is another image's
        hits = [j for j in range(len(x)) if torch.equal(img[..., 4:], x[j, ..., 4:])]
        assert len(hits) == 1 and not torch.equal(img, x[hits[0]])
    imgs, same = halves_batch(x, torch.Generator().manual_seed(2))
    assert imgs.shape == x.shape and set(same.tolist()) == {0, 1}


def test_the_coherence_net_has_a_third_head_and_caches_apart_from_the_default(tmp_data):
    "Issue 28: the third question is a preset of its own; the default network (every published number) is unchanged."
    assert "halves" not in SPRITE_NET_PRESETS["default"] and SPRITE_NET_PRESETS["coherence"]["halves"]
    split = sprite_split(load_sprites(None, verbose=False)[:90])
    tiny_halves = dict(TINY, halves=True)
    net = get_sprite_net(split, tiny_halves, verbose=False)
    assert net.halves_head is not None and get_sprite_net(split, TINY, verbose=False).halves_head is None
    assert sprite_net_path(split.train, tiny_halves) != sprite_net_path(split.train, TINY)
    SM._NETS.clear()
    again = get_sprite_net(split, tiny_halves, verbose=False)           # from its cache file
    assert again.halves_head is not None
    assert torch.equal(again.features(split.real[:4]), net.features(split.real[:4]))
