"""Built-in phantom data sets that need no download: fundus photographs (DR 0-4) and kidney CT slices.

``generate_fundus_dataset`` / ``generate_ct_dataset`` write a whole labelled set;
``render_fundus`` / ``render_ct`` draw one image from a ``numpy.random.Generator``;
``render_fundus_layers`` / ``render_ct_layers`` also return the lesion footprints.
"""
from medisynth.phantom.ct import CT_CLASSES, generate_ct_dataset, render_ct, render_ct_layers
from medisynth.phantom.fundus import GRADES, generate_fundus_dataset, render_fundus, render_fundus_layers

__all__ = [
    "CT_CLASSES", "GRADES", "generate_ct_dataset", "generate_fundus_dataset",
    "render_ct", "render_ct_layers", "render_fundus", "render_fundus_layers",
]
