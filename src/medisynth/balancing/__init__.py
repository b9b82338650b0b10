"""``medisynth balance``: top up the train split's classes with synthetic images.

Reads a prepared data set and a trained RUN, asks ``medisynth.sampling.sample`` for
the missing images of each class, and writes a combined data set in the image-folder
convention (readable back by ``medisynth prepare``)::

    DIR/images/<id>.png   every real image (all splits, pixel-identical to the prepared shards)
                          and every synthetic image
    DIR/labels.csv        image,label,class_index,synthetic,split,group,source[,d_score]
    DIR/balance.json      per class: real, requested, added, total (train split); the request; provenance;
                          how the real images got there (linked / copied / encoded) and the sampler's
                          own record (acceptance rates, shortfall)
    DIR/synthetic_grid.png  the sampler's preview grid (first images of each class)

Targets (train split, per class; real images are never removed):
- default: the majority class's count;
- ``target=N``: N per class;
- ``ratio=R``: ceil(R x majority count) per class.

Synthetic images are all ``split=train``; the real val and test images keep their split.
A real image whose source file is a PNG of exactly the prepared pixels is hard-linked (or
copied byte for byte), not re-encoded; only the others are encoded (``real_images``).

Modules: ``config`` (BalanceConfig, BalanceResult, class_targets), ``real_images`` (the real
images into the folder), ``run`` (``balance``: the counts, the sampler, the folder).
"""
from medisynth.balancing.config import BalanceConfig, BalanceResult, class_targets
from medisynth.balancing.run import balance

__all__ = ["BalanceConfig", "BalanceResult", "balance", "class_targets"]
