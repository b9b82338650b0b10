"""The self-supervised ``ssl`` feature space: seeded training, the per-data-set cache, input checks."""
import numpy as np
import pytest
import torch

import medisynth.features.ssl as ssl
from medisynth.errors import MedisynthError
from medisynth.features import ExtractorContext, FeatureSpaceUnavailable, build_extractor
from medisynth.training import toy

TINY = ssl.SSLRecipe(steps=3, batch_size=8)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return toy.write_toy_dataset(tmp_path_factory.mktemp("toy") / "data", per_class={"0": 6, "1": 6}, size=16)


def _images(n=6, channels=3, size=16, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, channels, size, size), dtype=np.uint8))


def test_training_is_seeded():
    a, _ = ssl.train_ssl_encoder(_images(), TINY)
    b, _ = ssl.train_ssl_encoder(_images(), TINY)
    c, _ = ssl.train_ssl_encoder(_images(), ssl.SSLRecipe(steps=3, batch_size=8, seed=1))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_extractor_features_and_normalised_descriptors(data, tmp_path):
    ctx = ExtractorContext(real_root=data, cache_dir=tmp_path, options={"ssl_steps": 3, "progress": False})
    ext = build_extractor("ssl", ctx)
    x = _images(5)
    feats = ext.extract(x).features
    assert feats.shape == (5, ext.model.feature_dim) and np.isfinite(feats).all()
    d = ext.descriptors(x)
    assert torch.allclose(d.norm(dim=1), torch.ones(5), atol=1e-5)
    # test-time flip: describing the mirrored image = describing the image with flip=True
    assert torch.allclose(ext.descriptors(x.flip(-1)), ext.descriptors(x, flip=True), atol=1e-5)


def test_cache_is_reused_and_rebuilt_when_corrupt(data, tmp_path, monkeypatch):
    first = ssl.ssl_encoder(data, cache_dir=tmp_path, recipe=TINY, progress=False)
    stems = list((tmp_path / "ssl").glob("*.json"))
    assert len(stems) == 1 and stems[0].with_suffix(".safetensors").is_file()

    calls = []
    real_train = ssl.train_ssl_encoder
    monkeypatch.setattr(ssl, "train_ssl_encoder", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    again = ssl.ssl_encoder(data, cache_dir=tmp_path, recipe=TINY, progress=False)
    assert calls == []  # loaded, not retrained
    assert all(torch.equal(first.state_dict()[k], again.state_dict()[k]) for k in first.state_dict())

    stems[0].with_suffix(".safetensors").write_bytes(b"not a safetensors file")
    rebuilt = ssl.ssl_encoder(data, cache_dir=tmp_path, recipe=TINY, progress=False)
    assert calls == [1]
    assert all(torch.equal(first.state_dict()[k], rebuilt.state_dict()[k]) for k in first.state_dict())  # seeded


def test_needs_a_real_data_set():
    with pytest.raises(FeatureSpaceUnavailable, match="--real"):
        build_extractor("ssl", ExtractorContext())


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 16, 16, 3), np.uint8), "channels last"),
    (np.zeros((4, 3, 16, 16), np.float32), "uint8"),
    (np.zeros((3, 16, 16), np.uint8), "batch"),
    (np.zeros((4, 3, 4, 4), np.uint8), "too small"),
])
def test_bad_inputs_raise_one_clear_error(bad, message):
    with pytest.raises(MedisynthError, match=message):
        ssl.check_images(bad, "query images")


def test_channel_count_must_match_the_encoder(data, tmp_path):
    ext = build_extractor("ssl", ExtractorContext(real_root=data, cache_dir=tmp_path, options={"ssl_steps": 3, "progress": False}))
    with pytest.raises(MedisynthError, match="channel"):
        ext.extract(_images(2, channels=1))


def test_views_stay_in_range_and_differ_per_image():
    x = ssl.to_model_input(_images(8, size=32))
    y = ssl.copy_augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    same = ssl.copy_augment(x[:1].repeat(8, 1, 1, 1), torch.Generator().manual_seed(0))
    assert not torch.allclose(same[0], same[1])  # parameters are drawn per image
