"""Feature spaces: the Inception loading path (random weights in torch-fidelity's format), skips, pixels."""
import numpy as np
import pytest
import torch

from medisynth.errors import MedisynthError
from medisynth.features import ExtractorContext, FeatureSpaceUnavailable, build_extractor
from medisynth.features.inception import load_inception, random_inception_state_dict


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """A randomly initialised Inception-v3 state dict saved the way torch-fidelity's release file is (torch.save of a dict)."""
    path = tmp_path_factory.mktemp("inception") / "weights-inception-random.pth"
    torch.save(random_inception_state_dict(seed=0), path)
    return path


def test_random_state_dict_has_torch_fidelitys_shapes():
    sd = random_inception_state_dict(seed=1)
    assert tuple(sd["fc.weight"].shape) == (1008, 2048)
    assert tuple(sd["Conv2d_1a_3x3.conv.weight"].shape) == (32, 3, 3, 3)
    assert len(sd) > 500


def test_inception_extractor_loads_local_weights_and_extracts(random_weights):
    extractor = build_extractor("inception", ExtractorContext(weights=random_weights, batch_size=2))
    gray = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    out = extractor.extract(gray)
    assert out.features.shape == (3, 2048) and out.logits.shape == (3, 1008)
    assert np.isfinite(out.features).all()
    # the same network as torch-fidelity's own forward pass on RGB input
    reference = load_inception(random_weights, features=("2048",))
    with torch.inference_mode():
        expected = reference(gray.expand(-1, 3, -1, -1).contiguous())[0].numpy()
    np.testing.assert_allclose(out.features, expected, rtol=1e-4, atol=1e-6)


def test_inception_weights_from_environment(random_weights, monkeypatch):
    monkeypatch.setenv("MEDISYNTH_INCEPTION_WEIGHTS", str(random_weights))
    assert build_extractor("inception", ExtractorContext()).weights == random_weights


def test_inception_without_weights_is_unavailable_with_one_line(monkeypatch):
    monkeypatch.delenv("MEDISYNTH_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(FeatureSpaceUnavailable) as e:
        build_extractor("inception", ExtractorContext())
    assert "\n" not in str(e.value) and "--weights" in str(e.value)


@pytest.mark.parametrize("content,match", [
    (None, "file not found"),
    (b"not a torch file", "not a PyTorch weights file"),
    ({"conv.weight": torch.zeros(1)}, "missing Conv2d_1a_3x3"),
])
def test_bad_inception_weights_are_one_clear_error(tmp_path, content, match):
    path = tmp_path / "w.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(MedisynthError, match=match):
        build_extractor("inception", ExtractorContext(weights=path))


def test_pickled_code_is_refused_before_torch_fidelity_loads_it(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": Evil()}, path)
    with pytest.raises(MedisynthError, match="not a PyTorch weights file"):
        build_extractor("inception", ExtractorContext(weights=path))


def test_radiomics_is_skipped_with_install_hint_when_missing():
    try:
        import radiomics  # noqa: F401
    except ImportError:
        with pytest.raises(FeatureSpaceUnavailable, match="no-build-isolation"):
            build_extractor("radiomics", ExtractorContext())
    else:
        images = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8)
        assert build_extractor("radiomics", ExtractorContext()).extract(images).features.shape[0] == 2


def test_pixels_space_fits_on_the_first_set_and_separates_shifted_images():
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.integers(0, 200, (40, 3, 32, 32), dtype=np.uint8))
    ext = build_extractor("pixels", ExtractorContext())
    a = ext.extract(real).features
    b = ext.extract(real).features
    np.testing.assert_allclose(a, b)
    brighter = ext.extract((real + 50).clamp(0, 255)).features
    assert np.linalg.norm(brighter.mean(0) - a.mean(0)) > 1.0


def test_unknown_feature_space_is_a_clear_error():
    with pytest.raises(MedisynthError, match="unknown feature space"):
        build_extractor("clip", ExtractorContext())


def test_domain_extractor_matches_the_classifiers_own_features_and_logits():
    from medisynth.classifier import SmallResNet, extract_features, predict_proba
    from medisynth.features.domain import DomainExtractor

    torch.manual_seed(0)
    model = SmallResNet(1, 3, width=4).eval()
    images = torch.randint(0, 256, (5, 1, 16, 16), dtype=torch.uint8)
    expected_features = extract_features(model, images, device="cpu")
    expected_proba = predict_proba(model, images, device="cpu")
    out = DomainExtractor(model, torch.device("cpu"), batch_size=2).extract(images)
    np.testing.assert_allclose(out.features, expected_features, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(torch.from_numpy(out.logits).softmax(1).numpy(), expected_proba, rtol=1e-4, atol=1e-5)
