"""Multi-model pipelines built on trained runs.

- ``vessels``: seed paper 003's vessel tree -> fundus photograph pairs (resvae on masks,
  deconvolution denoising, pix2pix, optional EDSR), written in the DRIVE layout;
- ``vessel_stats``: SSIM-to-reference and vessel-map statistics of synthetic vs real pairs;
- ``denoise``: the Richardson-Lucy + threshold clean-up of generated vessel maps;
- ``sr_eval``: an EDSR run against bicubic upsampling.

Runs are loaded through ``medisynth.runs.load_run``.
"""
