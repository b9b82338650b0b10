"""The CUDA path: training steps in bf16 autocast, sampling, the trainer and the sampler on a GPU.

Every test here is marked ``cuda``: it skips on a machine without CUDA (tests/conftest.py) and
``benchmarks/gpu_check.sh`` runs them on a GPU machine (``pytest -m cuda``).
"""
from __future__ import annotations

import pytest
import torch

from medisynth.models.base import DataSpec, build_model

pytestmark = pytest.mark.cuda

SPEC = DataSpec(32, 3, ["a", "b"])
UNET = {"num_channels": [8, 16], "num_head_channels": 8}
MODELS = {
    "cgan": ("cgan", {"width": 8, "latent_dim": 8, "embed_dim": 4}),
    "diffusion-ddpm": ("diffusion", UNET),
    "diffusion-edm": ("diffusion", {**UNET, "recipe": "edm"}),
}


def cuda_batch(n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"image": (torch.rand(n, 3, 32, 32, generator=g) * 2 - 1).cuda(),
            "label": torch.randint(0, 2, (n,), generator=g).cuda()}


@pytest.mark.parametrize("key", list(MODELS))
def test_training_steps_on_cuda_in_bf16_autocast(key):
    name, hyper = MODELS[key]
    torch.manual_seed(0)
    model = build_model(name, SPEC, hyper).cuda()
    optimizers = model.configure_optimizers()
    before = [p.detach().clone() for p in model.parameters()]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        for step in range(3):
            logs = model.training_step(cuda_batch(seed=step), optimizers, step)
            assert all(torch.isfinite(torch.tensor(v)) for v in logs.values()), logs
    after = list(model.parameters())
    assert all(p.dtype == torch.float32 and p.is_cuda for p in after)  # autocast leaves the weights in fp32
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("key", list(MODELS))
def test_sampling_on_cuda_gives_finite_reproducible_images(key):
    name, hyper = MODELS[key]
    torch.manual_seed(0)
    model = build_model(name, SPEC, hyper).cuda().eval()
    labels = torch.tensor([0, 1, 1, 0], device="cuda")
    options = {"steps": 4} if name == "diffusion" else {}
    first = model.generate(labels, torch.Generator("cuda").manual_seed(3), **options)
    again = model.generate(labels, torch.Generator("cuda").manual_seed(3), **options)
    assert first.shape == (4, 3, 32, 32) and first.is_cuda
    assert torch.isfinite(first).all() and first.min() >= -1 and first.max() <= 1
    # the same seed, the same images up to float rounding: cuDNN's kernels for transposed convolutions (the GAN
    # generators) may sum in a different order from one call to the next
    torch.testing.assert_close(first, again, atol=1e-4, rtol=0)


@pytest.mark.parametrize("recipe", ["ddpm", "edm"])
def test_trainer_and_sampler_on_cuda(tmp_path, recipe):
    """The trainer's bf16 autocast path on CUDA, then the sampler on CUDA, through the public API."""
    import numpy as np
    from PIL import Image

    from medisynth.sampling import SampleConfig, sample
    from medisynth.training.config import TrainConfig
    from medisynth.training.toy import write_toy_dataset
    from medisynth.training.trainer import train

    data = write_toy_dataset(tmp_path / "toy", per_class={"0": 4, "1": 4}, size=16, channels=1)
    result = train(TrainConfig(data=data, model="diffusion", out=tmp_path / "run", steps=3, batch_size=4,
                               hyper={**UNET, "recipe": recipe}, device="cuda", amp=True, sample_every=0,
                               progress=False))
    assert result.steps == 3 and all(np.isfinite(v) for v in result.metrics.values())
    sample(SampleConfig(run=tmp_path / "run", out=tmp_path / "synth", per_class={"1": 3}, steps=3, device="cuda",
                        progress=False))
    images = sorted((tmp_path / "synth" / "images").glob("*.png"))
    assert len(images) == 3
    for path in images:
        with Image.open(path) as image:
            assert image.size == (16, 16)
