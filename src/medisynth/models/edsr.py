"""EDSR: enhanced deep residual super-resolution (Lim et al. 2017), the x2 step of seed paper 003.

Architecture as in the paper: a 3x3 head convolution, ``n_resblocks`` residual blocks
(conv-ReLU-conv, no batch norm, output scaled by ``res_scale`` = 0.1) plus a 3x3
convolution, a long skip from the head, and a sub-pixel (pixel-shuffle) upsampler
(one x2 stage for scale 2, two for scale 4), then a 3x3 tail convolution.
The paper's baseline is 16 blocks x 64 features and the large model 32 x 256; the
defaults here (8 x 32) train on a CPU and are enough for x2 on fundus photographs.

Training uses the user's own high-resolution images (the prepared set's images):
``training_step`` crops random ``patch_size`` patches (HR side), makes the
low-resolution input by bicubic downsampling (antialiased), applies random
flips/rotations, and minimises L1 (Adam 1e-4, as in the paper).
``upscale`` maps N x C x H x W in [-1, 1] to N x C x sH x sW; ``evaluate_sr`` reports
PSNR/SSIM of EDSR against plain bicubic upsampling on held-out HR images.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medisynth.errors import MedisynthError
from medisynth.models.base import DataSpec, GenerativeModel, register_model
from medisynth.models.pix2pix import paired_augment


@dataclass
class EDSRHyper:
    scale: int = 2  # 2 or 4
    n_resblocks: int = 8  # paper: 16 (baseline) or 32
    n_feats: int = 32  # paper: 64 (baseline) or 256
    res_scale: float = 0.1
    patch_size: int = 96  # HR patch side for training (paper: 96 for x2); whole image if smaller
    lr: float = 1e-4
    augment: bool = True


class ResBlock(nn.Module):
    def __init__(self, n_feats: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.ReLU(True), nn.Conv2d(n_feats, n_feats, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.body(x) * self.res_scale


class EDSRNet(nn.Module):
    def __init__(self, channels: int, scale: int, n_resblocks: int, n_feats: int, res_scale: float):
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(channels, n_feats, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)], nn.Conv2d(n_feats, n_feats, 3, padding=1))
        upsampler: list[nn.Module] = []
        for _ in range({2: 1, 4: 2}[scale]):
            upsampler += [nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1), nn.PixelShuffle(2)]
        self.tail = nn.Sequential(*upsampler, nn.Conv2d(n_feats, channels, 3, padding=1))

    def forward(self, x):
        x = self.head(x)
        x = x + self.body(x)
        return self.tail(x)


def bicubic_downsample(images: torch.Tensor, scale: int) -> torch.Tensor:
    """HR -> LR the way the SR literature makes training pairs (antialiased bicubic)."""
    h, w = images.shape[-2:]
    return F.interpolate(images, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


def bicubic_upsample(images: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(images, scale_factor=scale, mode="bicubic", align_corners=False).clamp(-1, 1)


@register_model("edsr")
class EDSR(GenerativeModel):
    Hyper = EDSRHyper
    log_keys = ("L1",)
    #: generate() cannot sample from noise (the trainer skips its sample grids for such models)
    samples_from_noise = False

    def __init__(self, spec: DataSpec, hyper: EDSRHyper):
        super().__init__(spec, hyper)
        if hyper.scale not in (2, 4):
            raise MedisynthError(f"edsr scale must be 2 or 4, not {hyper.scale}")
        self.generator = EDSRNet(spec.channels, hyper.scale, hyper.n_resblocks, hyper.n_feats, hyper.res_scale)

    @classmethod
    def check_spec(cls, spec: DataSpec) -> None:
        if spec.image_size < 16:
            raise MedisynthError(f"edsr needs training images of at least 16 px, not {spec.image_size}")

    def configure_optimizers(self):
        return {"generator": torch.optim.Adam(self.generator.parameters(), lr=self.hyper.lr, betas=(0.9, 0.999), eps=1e-8)}

    def _random_patches(self, hr: torch.Tensor) -> torch.Tensor:
        """One random ``patch_size`` crop per image (side rounded down to a multiple of the scale)."""
        s = self.hyper.scale
        h, w = hr.shape[-2:]
        p = min(self.hyper.patch_size, h, w) // s * s
        if p == h and p == w:
            return hr
        tops = torch.randint(0, h - p + 1, (hr.shape[0],)).tolist()
        lefts = torch.randint(0, w - p + 1, (hr.shape[0],)).tolist()
        return torch.stack([hr[i, :, t:t + p, l:l + p] for i, (t, l) in enumerate(zip(tops, lefts))])

    def training_step(self, batch, optimizers, step):
        hr = self._random_patches(batch["image"])
        if self.hyper.augment:
            hr, _ = paired_augment(hr, hr[:, :1])
        lr = bicubic_downsample(hr, self.hyper.scale)
        opt = optimizers["generator"]
        opt.zero_grad(set_to_none=True)
        loss = F.l1_loss(self.generator(lr), hr)
        loss.backward()
        opt.step()
        return {"L1": loss.item()}

    @torch.no_grad()
    def upscale(self, images: torch.Tensor, batch_size: int = 2) -> torch.Tensor:
        """N x C x H x W in [-1, 1] -> N x C x (scale*H) x (scale*W) in [-1, 1]."""
        if images.ndim != 4 or images.shape[1] != self.spec.channels:
            raise MedisynthError(
                f"this edsr run upscales {self.spec.channels}-channel images, got a batch of shape {tuple(images.shape)}"
            )
        net = self.sampling_network("generator")
        was_training = net.training
        net.eval()
        device = next(net.parameters()).device
        out = [net(chunk.to(device=device, dtype=torch.float32)).clamp(-1, 1) for chunk in images.split(batch_size)]
        net.train(was_training)
        return torch.cat(out)

    @torch.no_grad()
    def generate(self, labels, generator=None, truncation=1.0, **options):
        raise MedisynthError(
            "an edsr run upsamples images and cannot sample from noise; "
            "use it as `medisynth pipeline vessels ... --sr-run THIS_RUN`"
        )


@torch.no_grad()
def evaluate_sr(model: EDSR, images: torch.Tensor) -> dict[str, float]:
    """PSNR / SSIM of EDSR and of bicubic upsampling against the HR ``images`` (N x C x H x W in [-1, 1]).

    The LR inputs are the bicubic-downsampled HR images; both reconstructions are
    compared with the HR originals in [0, 1] (PSNR: torchmetrics; SSIM: medisynth.metrics.ssim).
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    from medisynth.metrics.ssim import ssim

    s = model.hyper.scale
    h, w = images.shape[-2:]
    hr = images[..., : h // s * s, : w // s * s].float().cpu()
    lr = bicubic_downsample(hr, s)
    sr = model.upscale(lr).cpu()
    bic = bicubic_upsample(lr, s)

    def to01(x):
        return (x.clamp(-1, 1) + 1) / 2

    target = to01(hr)
    out = {}
    for name, pred in (("edsr", sr), ("bicubic", bic)):
        out[f"psnr_{name}"] = float(peak_signal_noise_ratio(to01(pred), target, data_range=1.0, dim=(1, 2, 3)))  # mean of per-image PSNR
        out[f"ssim_{name}"] = float(ssim(to01(pred), target).mean())
    return out
