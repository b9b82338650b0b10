"""Image classifiers for the downstream-utility protocols and for evaluation.

Modules: ``networks`` (the networks), ``training`` (training, prediction), ``cache`` (saving and
the cached domain classifier).

- ``SmallResNet``: a small ResNet trained from scratch (no pretrained weights are
  available offline); ``features(x)`` is the penultimate embedding, ``forward(x)``
  the logits. Its stem downsamples by ``stem_stride_for(image_size)`` (1 up to 32 px,
  2 from 64 px, 4 from 256 px), so the residual stages see at most ~32-64 px maps.
- ``torchvision_resnet18``: torchvision's ResNet-18 with weights from a LOCAL file
  (safetensors, or a torch file read with ``weights_only=True``), adapted to the
  channel count and class count of the data.
- ``train_classifier``: cross-entropy training on uint8 image tensors with
  optional on-the-fly "classic" augmentation, class-balanced sampling, a time
  budget, and early stopping on validation balanced accuracy (best weights kept).
- ``predict_proba``: softmax probabilities, batched.
- ``domain_classifier``: a SmallResNet trained on a prepared data set's train split,
  cached on disk (safetensors + JSON) keyed by the manifest's content hash.

Every network here takes float N x C x H x W images in [-1, 1] (medisynth's
convention, ``medisynth.data.dataset.uint8_to_float``); the helpers that take
uint8 tensors convert per batch.
"""
from medisynth.classifier.cache import (
    CLASSIFIER_VERSION,
    default_cache_dir,
    domain_classifier,
    load_classifier,
    save_classifier,
)
from medisynth.classifier.networks import (
    STEM_STRIDES,
    ResNet18Classifier,
    SmallResNet,
    load_state_dict_file,
    stem_stride_for,
    torchvision_resnet18,
)
from medisynth.classifier.training import (
    AUGMENTATIONS,
    build_classifier,
    classic_augment,
    extract_features,
    predict_proba,
    train_classifier,
)

__all__ = [
    "AUGMENTATIONS", "CLASSIFIER_VERSION", "STEM_STRIDES", "ResNet18Classifier", "SmallResNet", "build_classifier",
    "classic_augment", "default_cache_dir", "domain_classifier", "extract_features", "load_classifier",
    "load_state_dict_file", "predict_proba", "save_classifier", "stem_stride_for", "torchvision_resnet18",
    "train_classifier",
]
