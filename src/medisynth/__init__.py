"""medisynth: generative models that rebalance small, imbalanced medical image data sets.

The Python API mirrors the CLI: each command is one function taking a plain config object.
"""
__version__ = "0.1.0"

from medisynth.errors import MedisynthError  # noqa: E402

__all__ = ["MedisynthError", "__version__"]
