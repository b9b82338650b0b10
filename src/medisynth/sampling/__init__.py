"""Synthetic images from a trained run: ``sample(SampleConfig) -> SampleResult``.

Writes an image folder that ``medisynth prepare`` reads back (csv source)::

    DIR/images/syn_<class>_000001.png ...
    DIR/labels.csv   image,label,class_index,synthetic,model,run,seed,medisynth_version,run_id,checkpoint_step
                     [,d_score][,confidence]   (provenance: ``medisynth.provenance``; the PNGs carry it too)
    DIR/grid.png     the first 8 images of each class, one row per class
    DIR/sample.json  what was asked, what was written, acceptance rates, seed

Modules: ``config`` (SampleConfig, SampleResult), ``plan`` (which class, how many, which model),
``filters`` (d-score, near-copy and confidence filters; option checks), ``writer`` (the folder),
``sampler`` (the loop).
"""
from medisynth.sampling.config import SampleConfig, SampleResult
from medisynth.sampling.plan import parse_per_class, resolve_class
from medisynth.sampling.sampler import sample


def __getattr__(name: str):
    # UNLABELLED lives in data.image_folder, which imports pandas: looked up on use so that sampling a
    # conditional GAN starts without pandas
    if name == "UNLABELLED":
        from medisynth.data.image_folder import UNLABELLED

        return UNLABELLED
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["UNLABELLED", "SampleConfig", "SampleResult", "parse_per_class", "resolve_class", "sample"]
