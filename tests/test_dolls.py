"Chapters 01a/01 (the Dolls set: shipped layers, seeded composition, train/test splits) and 09d (gaussdiff.dolleval)."
import shutil

import numpy as np
import pytest
import torch

import gaussdiff.atlas as A
from gaussdiff.atlas import (DOLL_COUNTS, DOLL_LAYERS, N_DOLLS, compose_doll, compose_dolls, load_doll_layers)
from gaussdiff.data import DATASETS, channels_of, load_dolls, load_images
from gaussdiff.dolleval import copy_check, doll_split, jitter_positions, nearest_distances, permute_colours
from gaussdiff.splats import COL, make_splats
from gaussdiff.spritemetric import tangle


@pytest.fixture(scope="module")
def layers(): return load_doll_layers()


def test_shipped_layers_have_their_counts_names_and_source(layers):
    for k in DOLL_LAYERS:
        assert layers.tiles[k].shape == (DOLL_COUNTS[k], 32, 32, 4) and layers.tiles[k].dtype == np.uint8
        assert len(layers.names[k]) == DOLL_COUNTS[k]
    assert "human_m" in layers.names["base"] and "naga_red_m" not in layers.names["base"]  # tails do not wear legs
    assert "CC0" in layers.source and "crawl" in layers.source


def test_a_changed_layer_file_is_refused_with_the_fix(tmp_path, monkeypatch):
    src = A.shipped_sprites_path().with_name(A.DOLL_FILE)
    with np.load(src, allow_pickle=False) as z: arrays = {k: z[k] for k in z.files}
    arrays["body"] = arrays["body"].copy()
    arrays["body"][0, 16, 16] ^= 1  # one channel of one pixel
    np.savez_compressed(tmp_path / A.DOLL_FILE, **arrays)
    shutil.copy(A.shipped_sprites_path(), tmp_path / A.SHIPPED_SPRITES)
    monkeypatch.setattr(A, "shipped_sprites_path", lambda: tmp_path / A.SHIPPED_SPRITES)
    with pytest.raises(ValueError, match="restore it"): load_doll_layers()
    (tmp_path / A.DOLL_FILE).write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="unreadable"): load_doll_layers()


def test_a_doll_is_its_layers_painted_back_to_front(layers):
    base = layers.tiles["base"][0].astype(np.float64)
    only_base = compose_doll(layers, [-1, 0, -1, -1, -1, -1, -1])
    want = (base[..., :3] * (base[..., 3:] / 255)).round().clip(0, 255).astype(np.uint8)
    np.testing.assert_array_equal(only_base, want)
    parts = [0, 0, 0, 0, 0, -1, 0]
    np.testing.assert_array_equal(compose_doll(layers, parts, flip=True), compose_doll(layers, parts)[:, ::-1])
    # the helmet is painted over the body armour: where the helmet is opaque, the doll shows the helmet
    helm = layers.tiles["head"][0]
    opaque = helm[..., 3] == 255
    np.testing.assert_array_equal(compose_doll(layers, parts)[opaque], helm[..., :3][opaque])


def test_compose_dolls_is_seeded_extends_and_wears_hair_or_a_helmet_never_both(layers):
    d = compose_dolls(400, seed=0, layers=layers)
    assert d.x.shape == (400, 32, 32, 3) and d.x.dtype == np.uint8 and d.parts.shape == (400, len(DOLL_LAYERS))
    np.testing.assert_array_equal(compose_dolls(50, seed=0, layers=layers).x, d.x[:50])
    assert not np.array_equal(compose_dolls(50, seed=1, layers=layers).x, d.x[:50])
    col = {k: d.parts[:, i] for i, k in enumerate(DOLL_LAYERS)}
    assert (col["base"] >= 0).all() and not ((col["hair"] >= 0) & (col["head"] >= 0)).any()
    for k in DOLL_LAYERS: assert col[k].max() < DOLL_COUNTS[k]
    assert 0.4 < (col["head"] >= 0).mean() < 0.6 and 0.3 < d.flipped.mean() < 0.7
    assert len({x.tobytes() for x in d.x}) == 400  # no two alike


def test_dolls_are_a_data_set_with_disjoint_train_and_test_splits():
    assert "dolls" in DATASETS and channels_of("dolls") == 3
    x, y = load_images("dolls", 300, "train", verbose=False)
    t, _ = load_images("dolls", 300, "test", verbose=False)
    assert y is None and x.shape == (300, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert nearest_distances(t, x).min() > 0.01  # no held-out doll is a training doll
    with pytest.raises(ValueError, match="splits"): load_dolls(10, "valid")
    with pytest.raises(ValueError, match="only 3000"): load_dolls(N_DOLLS + 1)


def test_doll_split_takes_three_disjoint_thirds_of_the_held_out_dolls():
    s = doll_split(0, n=300)
    test = load_dolls(300, "test", verbose=False)
    parts = [s.reference, s.real, s.train]
    assert [len(p) for p in parts] == [100, 100, 100]
    rows = {tuple(v.flatten().tolist()) for v in test}
    keys = [{tuple(v.flatten().tolist()) for v in p} for p in parts]
    assert all(k <= rows for k in keys) and not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])


def test_nearest_distances_and_the_copy_check_catch_copies():
    g = torch.Generator().manual_seed(0)
    train, other = torch.rand(50, 3, 32, 32, generator=g), torch.rand(40, 3, 32, 32, generator=g)
    brute = torch.stack([((o - train) ** 2).mean((1, 2, 3)).sqrt().min() for o in other])
    torch.testing.assert_close(nearest_distances(other, train, chunk=7), brute.double())
    assert nearest_distances(train[:5], train).abs().max() < 1e-6
    copies = train[:40] + 0.001 * torch.randn(40, 3, 32, 32, generator=g)
    c = copy_check(copies, other, train)
    assert c["closer_share"] == 1.0 and c["sample_median"] < 0.01 < c["held_out_median"]
    assert copy_check(other, other, train)["closer_share"] <= 0.05


def test_score_snapshots_scores_every_snapshot_at_its_training_flops(tmp_path):
    from gaussdiff.recipes import load_or_train
    from gaussdiff.spritemetric import get_sprite_net
    from gaussdiff.dolleval import score_snapshots
    info = load_or_train("gir", "dolls", "smoke", out_dir=tmp_path / "run", progress=False)[3]
    split = doll_split(0, n=90)
    net = get_sprite_net(split, dict(width=4, feat_dim=8, epochs=1, batch_size=16), verbose=False)
    points = score_snapshots("gir", info, split, net, n=6, steps=3)
    assert [p.step for p in points] == [s["step"] for s in info.snapshots] and len(points) == 3
    assert [p.tflops for p in points] == [s["step"] * info.train_flops_per_step / 1e12 for s in info.snapshots]
    assert all(np.isfinite([p.kid, p.kid_std, p.precision, p.recall]).all() for p in points)
    assert points[-1].step == info.step and all(p.run == "gir" for p in points)


def _random_girs(b=64, n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return make_splats(torch.rand(b, n, 2, generator=g), 0.01 + 0.03 * torch.rand(b, n, generator=g),
                       colour=torch.rand(b, n, 3, generator=g))


def test_jitter_positions_moves_only_the_centres_by_the_asked_pixels():
    "Issue 28: the metric probe that shifts splats by a fraction of a pixel shifts them by that much, and only them."
    s = _random_girs(256, 32)
    out = jitter_positions(s, 0.5, size=32, seed=1)
    shift = (out[..., :2] - s[..., :2]) * 32
    assert abs(float(shift.std()) - 0.5) < 0.02 and abs(float(shift.mean())) < 0.02
    assert torch.equal(out[..., 2:], s[..., 2:])
    assert torch.equal(out, jitter_positions(s, 0.5, size=32, seed=1))
    assert not torch.equal(out, jitter_positions(s, 0.5, size=32, seed=2))
    assert torch.equal(jitter_positions(s, 0.0), s)
    assert torch.equal(s, _random_girs(256, 32))  # the input is not changed


def test_permute_colours_shuffles_within_each_image_never_across():
    "Issue 28: the colour probe keeps each doll's palette and places, unlike a tangle, which mixes dolls."
    s = _random_girs()
    out = permute_colours(s, seed=3)
    assert torch.equal(out[..., :5], s[..., :5])
    for a, b in zip(out, s):  # the same colours per image, as a multiset
        assert torch.equal(a[:, COL].sort(0).values, b[:, COL].sort(0).values)
    assert (out[..., COL] != s[..., COL]).any(-1).float().mean() > 0.9
    t = tangle(s, 3)  # a tangle takes splats from other images: its palettes differ
    assert not all(torch.equal(a[:, COL].sort(0).values, b[:, COL].sort(0).values) for a, b in zip(t, s))
