"""``medisynth evaluate``: how faithful, diverse, private and useful are synthetic images?

``evaluate(EvaluateConfig(real=DATA, fake=DIR_or_RUN, out=REPORT))`` writes REPORT/ with
``metrics.json`` (schema ``medisynth.metrics/2``, see docs/metrics_schema.md), a
self-contained ``report.html`` and ``plots/*.png``, and returns the metrics dictionary.

Steps: load the real prepared data set (reference split, training split, held-out val+test)
and the synthetic images (an image folder, or a training run sampled on the fly); per feature
space (inception / domain / ssl / radiomics / pixels) extract features and compute FID, KID, IS,
precision/recall/density/coverage overall and per class; the classification accuracy score;
pixel figures (SSIM/PSNR to the nearest training image, mean-image MSE, histogram distances,
MS-SSIM diversity); memorization against a held-out baseline; plots; the report.

Modules: ``config`` (EvaluateConfig), ``inputs`` (the real and synthetic image sets), ``run`` (the
metrics), ``yardstick`` (the same figures for real vs real images), ``small_classes`` (per-class
KID/coverage with intervals), ``verdict`` (the four answers the report opens with), ``figures`` (the
report's plots); ``medisynth.report`` renders the HTML.
"""
from medisynth.evaluation.config import DEFAULT_SPACES, SCHEMA, EvaluateConfig
from medisynth.evaluation.run import evaluate, summary_lines

__all__ = ["DEFAULT_SPACES", "SCHEMA", "EvaluateConfig", "evaluate", "summary_lines"]
