"""``inception``: the standard FID Inception-v3, torch-fidelity's ``FeatureExtractorInceptionV3``.

Weights are never downloaded: pass a local file (``--weights`` or $MEDISYNTH_INCEPTION_WEIGHTS),
the torch-fidelity ``weights-inception-2015-12-05-6726825d.pth`` (a plain ``torch.save``'d
state dict; keys like ``Conv2d_1a_3x3.conv.weight`` ... ``fc.weight`` (1008 x 2048)).
The file is first read with ``torch.load(weights_only=True)`` and checked, so torch-fidelity's
own (unrestricted) load only ever sees a plain tensor dictionary.

Features: the 2048-d pool features (FID/KID/PRDC) and the 1008 unbiased logits (IS).
"""
from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from medisynth.errors import MedisynthError
from medisynth.features.base import ExtractorContext, FeatureExtractor, FeatureSpaceUnavailable, Features, register_feature_space

WEIGHTS_ENV = "MEDISYNTH_INCEPTION_WEIGHTS"
REQUIRED_KEYS = ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.conv.weight", "fc.weight", "fc.bias")


def _tf_class():
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3


def check_weights_file(path: Path) -> None:
    """Raise a MedisynthError unless ``path`` is a torch-fidelity Inception state dict."""
    if not path.is_file():
        raise MedisynthError(f"--weights {path}: file not found; pass the torch-fidelity Inception-v3 .pth file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise MedisynthError(f"--weights {path}: not a PyTorch weights file ({str(e).splitlines()[0]})") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise MedisynthError(
            f"--weights {path}: not torch-fidelity Inception-v3 weights (missing {missing[0]}); "
            "use weights-inception-2015-12-05-6726825d.pth from torch-fidelity's releases"
        )
    if tuple(state["fc.weight"].shape) != (1008, 2048):
        raise MedisynthError(f"--weights {path}: fc.weight is {tuple(state['fc.weight'].shape)}, expected (1008, 2048)")


def load_inception(path: str | Path, features=("2048", "logits_unbiased")):
    """torch-fidelity's Inception-v3 with weights from a local file, in eval mode."""
    path = Path(path)
    check_weights_file(path)
    return _tf_class()("inception-v3-compat", list(features), feature_extractor_weights_path=str(path))


def random_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A randomly initialised state dict of torch-fidelity's Inception-v3 (for tests and benchmarks).

    The constructor insists on loading weights; we build it with loading stubbed out.
    """
    torch.manual_seed(seed)
    cls = _tf_class()
    with mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", return_value={}), \
            mock.patch.object(cls, "load_state_dict", lambda self, sd: None):
        net = cls("inception-v3-compat", ["2048"])
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


class InceptionExtractor(FeatureExtractor):
    name = "inception"
    description = "torch-fidelity FID Inception-v3, 2048-d pool features (images resized to 299 px, gray repeated to RGB)"
    has_logits = True

    def __init__(self, weights: Path, device: torch.device, batch_size: int = 64):
        self.weights = Path(weights)
        self.device = device
        self.batch_size = batch_size
        self.net = load_inception(self.weights).to(device)
        if device.type == "cpu":
            self.net = self.net.to(memory_format=torch.channels_last)

    def extract(self, images: torch.Tensor) -> Features:
        feats, logits = [], []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                x = images[i : i + self.batch_size].to(self.device, non_blocking=True)
                if x.shape[1] == 1:
                    x = x.expand(-1, 3, -1, -1)
                f, lg = self.net(x.contiguous(memory_format=torch.channels_last) if self.device.type == "cpu" else x)
                feats.append(f.cpu())
                logits.append(lg.cpu())
        return Features(torch.cat(feats).numpy().astype(np.float32), torch.cat(logits).numpy().astype(np.float32))

    def info(self) -> dict:
        return {**super().info(), "weights": str(self.weights)}


def resolve_weights(weights) -> Path | None:
    value = weights or os.environ.get(WEIGHTS_ENV)
    return Path(value) if value else None


@register_feature_space("inception")
def build(context: ExtractorContext) -> InceptionExtractor:
    weights = resolve_weights(context.weights)
    if weights is None:
        raise FeatureSpaceUnavailable(
            f"inception skipped: no Inception-v3 weights (pass --weights PATH or set ${WEIGHTS_ENV} to torch-fidelity's "
            "weights-inception-2015-12-05-6726825d.pth; they cannot be downloaded here)"
        )
    return InceptionExtractor(weights, context.device, context.batch_size)
