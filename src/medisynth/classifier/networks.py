"""The classifier networks: ``SmallResNet`` (trained from scratch, size-dependent stem) and
torchvision's ResNet-18 with weights from a local file. Both take float N x C x H x W in [-1, 1]."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from medisynth.errors import MedisynthError


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm rather than BatchNorm: the short trainings on small data sets that medisynth runs
    leave BatchNorm's running statistics far from the trained weights' (a model at 100 % training
    accuracy scored chance in eval mode), and GroupNorm behaves the same in train and eval mode
    and with batches of any size."""
    return nn.GroupNorm(min(8, channels), channels)


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (He et al. 2016), summed then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _norm(cout)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


STEM_STRIDES = (1, 2, 4)


def stem_stride_for(image_size: int) -> int:
    """SmallResNet's stem stride for square images of ``image_size`` px: 1 below 64 px, 2 from 64 px, 4 from 256 px.

    Full-resolution stems made the first stage the bulk of the cost (at 128 px, 16x the
    activations of 32 px); downsampling early keeps the residual stages at 32-64 px, where
    the small data sets medisynth trains on carry their class evidence anyway (the same
    trade-off as ResNet's stride-4 stem at 224 px).
    """
    if image_size >= 256:
        return 4
    if image_size >= 64:
        return 2
    return 1


class SmallResNet(nn.Module):
    """stem (3x3 conv, stride ``stem_stride``) + 4 residual stages (width, 2w, 4w, 8w; strides 1, 2, 2, 2)
    + global pooling + linear, with GroupNorm (see ``_norm``).

    ``stem_stride`` is 1, 2 (a stride-2 conv) or 4 (stride-2 conv + 3x3 stride-2 max pool, as in
    ResNet); leave it None and pass ``image_size`` to get ``stem_stride_for(image_size)``, or
    neither for 1 (the layout of CLASSIFIER_VERSION 1 checkpoints, whose config lacks the key).
    It is part of ``config``, so ``save_classifier``/``load_classifier`` rebuild the same network.

    About 2.8 M parameters at width 32 whatever the stride; works from 16 px up (pooling is adaptive).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, stem_stride: int | None = None,
                 *, image_size: int | None = None):
        super().__init__()
        if in_channels < 1 or num_classes < 1 or width < 1:
            raise MedisynthError("SmallResNet needs in_channels, num_classes and width >= 1")
        if stem_stride is None:
            stem_stride = stem_stride_for(image_size) if image_size is not None else 1
        if stem_stride not in STEM_STRIDES:
            raise MedisynthError(f"SmallResNet stem_stride={stem_stride!r}: choose one of {STEM_STRIDES}")
        self.config = {"in_channels": int(in_channels), "num_classes": int(num_classes), "width": int(width),
                       "stem_stride": int(stem_stride)}
        w = width
        stem = [nn.Conv2d(in_channels, w, 3, min(stem_stride, 2), 1, bias=False), _norm(w), nn.ReLU(inplace=True)]
        if stem_stride == 4:
            stem.append(nn.MaxPool2d(3, 2, 1))  # no parameters: the state-dict keys are the same for every stride
        self.stem = nn.Sequential(*stem)
        stages, cin = [], w
        for cout, stride in ((w, 1), (2 * w, 2), (4 * w, 2), (8 * w, 2)):
            stages.append(nn.Sequential(_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        self.feature_dim = cin

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding, N x feature_dim (8 * width)."""
        return self.pool(self.stages(self.stem(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class ResNet18Classifier(nn.Module):
    """torchvision ResNet-18 with the same ``features`` / ``forward`` interface as SmallResNet."""

    def __init__(self, net: nn.Module, in_channels: int, num_classes: int):
        super().__init__()
        self.net = net
        self.config = {"in_channels": int(in_channels), "num_classes": int(num_classes), "arch": "resnet18"}
        self.feature_dim = net.fc.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return n.avgpool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.fc(self.features(x))


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a local ``.safetensors`` file or a torch file (read with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise MedisynthError(
            f"--weights {path}: file not found; pass a local ResNet-18 state dict (.safetensors or .pth), "
            "e.g. one saved with torchvision.models.resnet18(weights='DEFAULT').state_dict() on a machine with internet"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except MedisynthError:
        raise
    except Exception as e:  # damaged file, pickled objects refused by weights_only, ...
        raise MedisynthError(f"--weights {path}: cannot read it as a state dict ({e}); re-export it as .safetensors") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MedisynthError(f"--weights {path}: does not hold a state dict of tensors")
    return state


def torchvision_resnet18(num_classes: int, in_channels: int = 3, weights_path: str | Path | None = None) -> ResNet18Classifier:
    """torchvision ResNet-18, optionally initialised from LOCAL pretrained weights.

    The weights' 1000-class head is dropped (a new ``num_classes`` head is initialised);
    for 1-channel data the first convolution's RGB filters are summed (the usual
    grayscale adaptation), so the pretrained filters still respond to luminance.
    """
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if weights_path is not None:
        state = load_state_dict_file(weights_path)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise MedisynthError(
                f"--weights {weights_path}: not a torchvision ResNet-18 state dict "
                f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})"
            )
    if in_channels != 3:
        old = net.conv1
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        with torch.no_grad():
            if in_channels == 1:
                net.conv1.weight.copy_(old.weight.sum(dim=1, keepdim=True))
            else:
                net.conv1.weight.copy_(old.weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1))
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return ResNet18Classifier(net, in_channels, num_classes)
