"""The classifier used by the utility protocols and the evaluation: shapes, training, caching, weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medisynth.classifier import (
    SmallResNet,
    classic_augment,
    domain_classifier,
    extract_features,
    load_classifier,
    predict_proba,
    save_classifier,
    stem_stride_for,
    torchvision_resnet18,
    train_classifier,
)
from medisynth.errors import MedisynthError
from medisynth.downstream.toy import toy_images, write_toy_prepared


@pytest.mark.parametrize("channels,size,classes", [(1, 16, 2), (3, 32, 5)])
def test_small_resnet_shapes(channels, size, classes):
    model = SmallResNet(channels, classes, width=8).eval()
    x = torch.rand(3, channels, size, size) * 2 - 1
    assert model(x).shape == (3, classes)
    assert model.features(x).shape == (3, 64) == (3, model.feature_dim)


def _toy_tensors(labels, size=16, channels=3, seed=0):
    images = toy_images(labels, size, channels, seed)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(labels)


def test_training_reduces_loss_and_learns_separable_data():
    labels = [0, 1, 2] * 16
    x, y = _toy_tensors(labels)
    xv, yv = _toy_tensors([0, 1, 2] * 4, seed=1)
    model, history = train_classifier(x, y, 3, val=(xv, yv), epochs=6, batch_size=16, lr=3e-3,
                                      device="cpu", width=8, progress=False)
    losses = [e["loss"] for e in history["epochs"]]
    assert losses[-1] < losses[0]
    assert history["best_val_balanced_accuracy"] >= 0.9
    probs = predict_proba(model, xv, device="cpu")
    assert probs.shape == (12, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert not model.training


def test_training_is_reproducible_by_seed():
    x, y = _toy_tensors([0, 1] * 8)
    runs = [train_classifier(x, y, 2, epochs=1, batch_size=8, seed=s, device="cpu", width=4,
                             augment="classic", class_balanced=True, progress=False)[0] for s in (3, 3, 4)]
    p = [predict_proba(m, x, device="cpu") for m in runs]
    assert np.allclose(p[0], p[1]) and not np.allclose(p[0], p[2])


@pytest.mark.parametrize("scores, stopped, epochs_run, best_epoch", [
    # at chance (1/3) for longer than the patience, then learning: not stopped at chance
    ([1 / 3] * 5 + [0.6, 0.7] + [0.5] * 9, "patience", 9, 7),
    # below chance counts as not learned yet too
    ([0.0, 0.2, 0.3, 0.3, 0.3, 0.9] + [0.5] * 10, "patience", 8, 6),
    # never above chance: every epoch runs
    ([1 / 3] * 16, "epochs", 16, 1),
])
def test_patience_counts_only_once_val_is_above_chance(monkeypatch, scores, stopped, epochs_run, best_epoch):
    from medisynth.classifier import training

    scripted = iter(scores)
    monkeypatch.setattr(training, "_balanced_accuracy", lambda y_true, y_pred: next(scripted))
    x, y = _toy_tensors([0, 1, 2] * 4)
    _, history = train_classifier(x, y, 3, val=(x, y), epochs=16, batch_size=12, patience=2, device="cpu",
                                  width=4, progress=False)
    assert (history["stopped"], len(history["epochs"]), history["best_epoch"]) == (stopped, epochs_run, best_epoch)


def test_draw_weights_are_the_draw_proportions():
    x, y = _toy_tensors([0, 1, 2] * 6)
    # class_balanced is the special case weight = 1 / class count: the same draws, the same model
    runs = [train_classifier(x, y, 3, epochs=1, batch_size=6, seed=2, device="cpu", width=4, progress=False,
                             epoch_size=12, **option)[0]
            for option in ({"class_balanced": True}, {"draw_weights": np.full(18, 1 / 6)})]
    assert np.allclose(predict_proba(runs[0], x, device="cpu"), predict_proba(runs[1], x, device="cpu"))
    # weight only on class 0: the classifier never sees another label
    only_zero = (y.numpy() == 0).astype(float)
    model, _ = train_classifier(x, y, 3, epochs=8, batch_size=6, lr=1e-2, device="cpu", width=4, progress=False,
                                draw_weights=only_zero)
    assert (predict_proba(model, x, device="cpu").argmax(1) == 0).all()


@pytest.mark.parametrize("weights", [np.ones(3), -np.ones(6), np.zeros(6), np.full(6, np.nan)])
def test_bad_draw_weights_raise(weights):
    x, y = _toy_tensors([0, 1] * 3)
    with pytest.raises(MedisynthError, match="draw_weights"):
        train_classifier(x, y, 2, draw_weights=weights, progress=False)


def test_time_budget_stops_early():
    x, y = _toy_tensors([0, 1] * 8)
    _, history = train_classifier(x, y, 2, epochs=50, batch_size=4, device="cpu", width=4,
                                  time_budget_s=0.0, progress=False)
    assert history["stopped"] == "time_budget" and history["steps"] == 1


def test_bad_inputs_raise_clear_errors():
    x, y = _toy_tensors([0, 1] * 4)
    with pytest.raises(MedisynthError, match="augment"):
        train_classifier(x, y, 2, augment="fancy", progress=False)
    with pytest.raises(MedisynthError, match="uint8"):
        train_classifier(x.float(), y, 2, progress=False)
    with pytest.raises(MedisynthError, match="labels must lie"):
        train_classifier(x, y + 5, 2, progress=False)


@pytest.mark.parametrize("channels", [1, 3])
def test_classic_augment_keeps_range_and_varies_per_image(channels):
    x = torch.from_numpy(toy_images([0] * 8, 16, channels)).permute(0, 3, 1, 2).float() / 127.5 - 1
    x = x[:1].repeat(8, 1, 1, 1)  # eight copies of one image
    out = classic_augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    assert not torch.allclose(out[0], out[1])  # parameters are drawn per image


def test_save_load_round_trip(tmp_path):
    model = SmallResNet(3, 4, width=4).eval()
    save_classifier(model, tmp_path / "clf", {"note": "x"})
    loaded, meta = load_classifier(tmp_path / "clf")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.allclose(model(x), loaded(x)) and meta["note"] == "x"


@pytest.mark.parametrize("size,stride", [(16, 1), (32, 1), (48, 1), (64, 2), (128, 2), (256, 4), (512, 4)])
def test_stem_stride_depends_on_image_size(size, stride):
    assert stem_stride_for(size) == stride
    model = SmallResNet(1, 2, width=4, image_size=size).eval()
    assert model.config["stem_stride"] == stride
    # the residual stages see the image downsampled by the stem stride
    assert model.stem(torch.zeros(1, 1, size, size)).shape[-1] == size // stride


def test_stem_stride_round_trips_through_save_load(tmp_path):
    model = SmallResNet(3, 4, width=4, image_size=64).eval()
    assert model.config["stem_stride"] == 2
    save_classifier(model, tmp_path / "clf")
    loaded, meta = load_classifier(tmp_path / "clf")
    assert meta["config"]["stem_stride"] == 2 and loaded.config == model.config
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(model(x), loaded(x), atol=1e-6)


def test_old_checkpoint_without_stem_stride_loads_full_resolution(tmp_path):
    """CLASSIFIER_VERSION 1 configs have no stem_stride: they were trained with a stride-1 stem."""
    from medisynth.io import read_json, write_json

    model = SmallResNet(3, 4, width=4, stem_stride=1).eval()
    save_classifier(model, tmp_path / "clf")
    meta = read_json(tmp_path / "clf.json")
    del meta["config"]["stem_stride"]
    write_json(tmp_path / "clf.json", meta)
    loaded, _ = load_classifier(tmp_path / "clf")
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert loaded.config["stem_stride"] == 1 and torch.allclose(model(x), loaded(x), atol=1e-6)


def test_train_classifier_picks_the_stem_stride_from_the_images():
    x, y = _toy_tensors([0, 1] * 4, size=64)
    model, _ = train_classifier(x, y, 2, epochs=1, batch_size=8, device="cpu", width=4, progress=False)
    assert model.config["stem_stride"] == 2


@pytest.mark.parametrize("run", [predict_proba, extract_features])
def test_model_stays_trainable_after_inference(run):
    """predict/extract run under inference_mode and convert the model to channels_last; parameters
    converted INSIDE inference_mode would be inference tensors that backward refuses."""
    x, y = _toy_tensors([0, 1] * 2, size=32)
    model = SmallResNet(3, 2, width=4)  # contiguous parameters: the conversion really happens
    run(model, x, device="cpu")
    model.train()
    torch.nn.functional.cross_entropy(model(x.float() / 127.5 - 1), y).backward()
    assert model.stem[0].weight.grad is not None


def test_bad_stem_stride_raises():
    with pytest.raises(MedisynthError, match="stem_stride"):
        SmallResNet(3, 2, width=4, stem_stride=3)


def test_domain_classifier_is_cached(tmp_path):
    write_toy_prepared(tmp_path / "data", {"train": [6, 6], "val": [2, 2], "test": [2, 2]})
    cache = tmp_path / "cache"
    first = domain_classifier(tmp_path / "data", cache_dir=cache, device="cpu", epochs=1, width=4, progress=False)
    files = sorted(p.suffix for p in (cache / "classifiers").iterdir())
    assert files == [".json", ".safetensors"]
    second = domain_classifier(tmp_path / "data", cache_dir=cache, device="cpu", epochs=1, width=4, progress=False)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    # the in-memory model is channels_last, the loaded one contiguous: equal up to float rounding (~4e-7)
    assert torch.allclose(first.eval()(x), second(x), atol=1e-5)
    # a different recipe is a different cache entry
    domain_classifier(tmp_path / "data", cache_dir=cache, device="cpu", epochs=1, width=4, seed=1, progress=False)
    assert len(list((cache / "classifiers").glob("*.json"))) == 2


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("channels", [1, 3])
def test_resnet18_loads_local_weights(tmp_path, suffix, channels):
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    reference = resnet18(weights=None)
    state = reference.state_dict()
    path = tmp_path / f"r18{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    model = torchvision_resnet18(num_classes=3, in_channels=channels, weights_path=path)
    assert torch.equal(model.net.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    if channels == 3:
        assert torch.equal(model.net.conv1.weight, reference.conv1.weight)
    x = torch.rand(2, channels, 32, 32)
    assert model.eval()(x).shape == (2, 3) and model.features(x).shape == (2, 512)


def test_resnet18_missing_or_bad_weights(tmp_path):
    with pytest.raises(MedisynthError, match="file not found"):
        torchvision_resnet18(2, 3, tmp_path / "nope.safetensors")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(MedisynthError, match="not a torchvision ResNet-18"):
        torchvision_resnet18(2, 3, tmp_path / "other.pth")
