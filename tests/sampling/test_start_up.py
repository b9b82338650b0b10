"""Sampling a GAN run starts without the libraries only other commands need (README "Where things live")."""
from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("pandas", "matplotlib", "scipy", "sklearn", "monai", "torchvision", "pydicom", "nibabel", "torch_fidelity")


def test_the_sample_path_imports_no_heavy_library():
    code = ("import sys; import medisynth.cli, medisynth.sampling; from medisynth.models import get_model_class; "
            f"get_model_class('cgan'); print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("name", ["UNLABELLED"])
def test_names_looked_up_on_use_are_still_exported(name):
    import medisynth.sampling
    from medisynth.data import image_folder

    assert getattr(medisynth.sampling, name) == getattr(image_folder, name) and name in medisynth.sampling.__all__
    with pytest.raises(AttributeError, match="no attribute 'NOT_THERE'"):
        medisynth.sampling.NOT_THERE
