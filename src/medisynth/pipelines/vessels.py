"""Vessel tree -> fundus photograph pairs (seed paper 003: residual VAE + denoising + pix2pix + EDSR).

Stages, for N pairs:

1. sample N vessel maps from a run trained on the vessel masks
   (``medisynth train DATA --model resvae --target masks``): 1-channel maps in [0, 1];
2. clean each map into a thin, connected binary tree (``denoise.denoise_vessel_map``:
   Richardson-Lucy deconvolution, Otsu/fixed threshold with hysteresis, small-component removal),
   inside a circular field of view;
3. translate each tree into a colour fundus photograph with a pix2pix run
   (``medisynth train DATA --model pix2pix``);
4. optionally upsample the photograph with an EDSR run (x2: 512 -> 1024); the vessel and
   FOV masks are upsampled with nearest neighbour so they stay binary and aligned;
5. write the pairs in the DRIVE layout, so ``medisynth prepare DIR --source pairs`` reads them::

       DIR/training/images/01_training.png
       DIR/training/1st_manual/01_manual1.png
       DIR/training/mask/01_training_mask.png
       DIR/pipeline.json      settings, runs, per-image vessel statistics

   ``format="dicom"`` / ``"nifti"`` write the same names ending ``.dcm`` / ``.nii.gz`` instead
   (``medisynth.sampling.formats``): one Secondary Capture file per image (one study per run, one
   series per folder), or one NIfTI one-slice stack per image (RGB24 photographs). One file per
   image keeps the pairing by name, so ``prepare --source pairs`` and ``pipeline vessels-eval`` read
   them as they read the PNGs. Unlike the PNGs, the field-of-view masks are marked synthetic too: a
   DICOM file needs its series description and comment anyway.

The output folder appears only when complete (``atomic_dir``).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from medisynth.data.images import float_to_uint8
from medisynth.device import resolve_device
from medisynth.errors import MedisynthError
from medisynth.io import atomic_dir, write_json, write_png
from medisynth.models.base import GenerativeModel
from medisynth.pipelines.denoise import DenoiseOptions, denoise_vessel_map
from medisynth.pipelines.fov import circle_fov, fov_from_image
from medisynth.runs import LoadedRun, load_run
from medisynth.pipelines.vessel_stats import vessel_map_stats
from medisynth.provenance import Provenance
from medisynth.sampling.formats import SUFFIXES, DicomFiles, IntensityWindow, check_format, save_nifti


#: mean vessel density (fraction of the FOV) above which the output is flagged as not tree-like
MAX_PLAUSIBLE_DENSITY = 0.3


@dataclass
class VesselPipelineConfig:
    vessel_run: Path  # a run trained on vessel masks (1 channel), e.g. resvae --target masks
    translate_run: Path  # a pix2pix run (vessel mask -> fundus photograph)
    out: Path
    n: int = 20
    sr_run: Optional[Path] = None  # an edsr run; upsamples the photographs (x2 or x4)
    seed: int = 0
    device: str = "auto"
    denoise: DenoiseOptions = field(default_factory=DenoiseOptions)
    fov: str = "circle"  # "circle": the disc inscribed in the square image; "image": from the photograph
    label: Optional[str] = None  # class of the vessel run to sample (conditional runs); default: the first
    batch_size: int = 8
    overwrite: bool = False
    format: str = "png"  #: image files: "png", "dicom" or "nifti" (``medisynth.sampling.formats``)

    def check(self) -> None:
        check_format(self.format)  # photographs (1 or 3 channels) and masks (1) both fit every format
        if self.n < 1:
            raise MedisynthError(f"--n must be at least 1 (got {self.n})")
        if self.batch_size < 1:
            raise MedisynthError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.fov not in ("circle", "image"):
            raise MedisynthError(f"--fov {self.fov!r}: choose circle or image")
        self.denoise.check()


@dataclass
class PipelineResult:
    out: Path
    n: int
    image_size: int
    vessel_size: int
    notes: list[str]
    seconds: float
    format: str = "png"

    def summary(self) -> str:
        lines = [f"wrote {self.n} image + vessel-mask pairs ({self.image_size} x {self.image_size}) as {self.format} "
                 f"files in DRIVE layout to {self.out} in {self.seconds:.1f} s"]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"  read them back with: medisynth prepare {self.out} --source pairs --out PREPARED")
        return "\n".join(lines)


# -- checks -----------------------------------------------------------------
def check_models(vessel: GenerativeModel, translator: GenerativeModel, upscaler: GenerativeModel | None,
                 names: tuple[str, str, str] = ("--vessel-run", "--translate-run", "--sr-run")) -> None:
    """One clear error when the three models do not fit together."""
    vflag, tflag, sflag = names
    if vessel.spec.channels != 1:
        raise MedisynthError(
            f"{vflag}: model {vessel.name!r} makes {vessel.spec.channels}-channel images, not 1-channel vessel maps; "
            "train the vessel model on the masks: `medisynth train DATA --model resvae --target masks`"
        )
    if not hasattr(translator, "translate"):
        raise MedisynthError(f"{tflag}: model {translator.name!r} cannot translate vessel masks; give a pix2pix run")
    if getattr(translator, "mask_channels", 1) != vessel.spec.channels:
        raise MedisynthError(
            f"{tflag}: pix2pix expects {translator.mask_channels}-channel masks but the vessel run makes "
            f"{vessel.spec.channels}-channel maps"
        )
    if upscaler is not None:
        if not hasattr(upscaler, "upscale"):
            raise MedisynthError(f"{sflag}: model {upscaler.name!r} cannot upsample images; give an edsr run")
        if upscaler.spec.channels != translator.spec.channels:
            raise MedisynthError(
                f"{sflag}: the edsr run upsamples {upscaler.spec.channels}-channel images but the pix2pix run "
                f"makes {translator.spec.channels}-channel images; train edsr on the same prepared photographs"
            )


def _check_run_targets(vessel: LoadedRun, translator: LoadedRun) -> None:
    if vessel.target != "masks":
        raise MedisynthError(
            f"--vessel-run {vessel.path} learned {vessel.target}, not vessel masks; "
            "train it with `medisynth train DATA --model resvae --target masks`"
        )


# -- stages ------------------------------------------------------------------
@torch.no_grad()
def sample_vessel_maps(model: GenerativeModel, n: int, generator: torch.Generator, label: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Batches of vessel maps, N x 1 x S x S in [0, 1] (vessels bright)."""
    device = next(model.parameters()).device
    done = 0
    while done < n:
        k = min(batch_size, n - done)
        labels = torch.full((k,), label, dtype=torch.long, device=device)
        maps = model.generate(labels, generator=generator)
        yield ((maps.float().clamp(-1, 1) + 1) / 2).cpu()
        done += k


def _to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    return float_to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()


def synthesise_pairs(
    vessel: GenerativeModel,
    translator: GenerativeModel,
    upscaler: GenerativeModel | None,
    n: int,
    seed: int = 0,
    denoise: DenoiseOptions | None = None,
    fov_mode: str = "circle",
    label: int = 0,
    batch_size: int = 8,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield N (photograph uint8 H x W x C, vessel mask uint8 H x W {0,255}, FOV mask uint8 H x W {0,255})."""
    check_models(vessel, translator, upscaler)
    denoise = denoise or DenoiseOptions()
    size = translator.spec.image_size
    device = next(vessel.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    circle = circle_fov(size)
    for maps in sample_vessel_maps(vessel, n, generator, label, batch_size):
        if maps.shape[-1] != size:  # a vessel run trained at another size: resize the soft maps, then clean
            maps = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)
        trees = np.stack([denoise_vessel_map(m[0].numpy(), denoise, fov=circle) for m in maps])
        photos = translator.translate(torch.from_numpy(trees[:, None]).float())
        if upscaler is not None:
            photos = upscaler.upscale(photos)
        photos_u8 = _to_uint8_hwc(photos)
        scale = photos_u8.shape[1] // size
        for photo, tree in zip(photos_u8, trees):
            if scale > 1:  # nearest neighbour keeps the masks binary and pixel-aligned with the photograph
                tree = tree.repeat(scale, 0).repeat(scale, 1)
            fov = circle_fov(photo.shape[0]) if fov_mode == "circle" else fov_from_image(photo)
            tree = tree & fov
            yield photo, (tree * 255).astype(np.uint8), (fov * 255).astype(np.uint8)


def drive_names(index: int, width: int, suffix: str = ".png") -> tuple[str, str, str]:
    """DRIVE file names of pair ``index`` (1-based): images/, 1st_manual/, mask/."""
    key = f"{index:0{width}d}"
    return f"{key}_training{suffix}", f"{key}_manual1{suffix}", f"{key}_training_mask{suffix}"


#: the DRIVE folders of a pair, with what they hold (the DICOM series descriptions name it)
DRIVE_FOLDERS = (("images", "fundus photographs"), ("1st_manual", "vessel maps"), ("mask", "field-of-view masks"))


class PairFiles:
    """Writes the images of the pairs in one ``--format``; DICOM files of one call share a study."""

    def __init__(self, folder: Path, image_format: str = "png", provenance: Optional[Provenance] = None):
        if image_format != "png" and provenance is None:
            raise ValueError(f"{image_format} files always say what made them: pass the provenance record")
        self.folder, self.format, self.provenance = Path(folder), image_format, provenance
        self.suffix = SUFFIXES[image_format]
        self.dicom = DicomFiles(self.folder, IntensityWindow()) if image_format == "dicom" else None

    def write(self, subfolder: str, name: str, number: int, pixels: np.ndarray) -> None:
        """uint8 H x W or H x W x C -> ``training/<subfolder>/<name>``; PNG FOV masks carry no provenance
        (plain geometry), every DICOM/NIfTI file does."""
        path = self.folder / "training" / subfolder / name
        if self.format == "png":
            marked = self.provenance is not None and subfolder != "mask"
            write_png(path, pixels, self.provenance.png_text() if marked else None)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels
        if self.dicom is not None:
            what = dict(DRIVE_FOLDERS)[subfolder]
            self.dicom.save(path, pixels, self.provenance, subfolder, number,
                            f"SYNTHETIC medisynth {self.provenance.model} {what}")
        else:  # 8-bit pixels: the identity map (slope 1, intercept 0)
            save_nifti(path, [pixels], self.provenance, IntensityWindow())


def write_drive_pairs(pairs, folder: Path, n: int, provenance: Optional[Provenance] = None,
                      image_format: str = "png") -> list[dict]:
    """Write the pairs under ``folder/training/{images,1st_manual,mask}``; return per-image records.

    ``provenance`` marks the synthetic photographs and vessel maps (``medisynth.provenance``: PNG text
    chunks, DICOM ImageComments, a NIfTI comment extension); DICOM and NIfTI need it."""
    width = max(2, len(str(n)))
    records = []
    files = PairFiles(folder, image_format, provenance)
    for i, (photo, vessels, fov) in enumerate(pairs, start=1):
        names = drive_names(i, width, files.suffix)
        for (subfolder, _), name, pixels in zip(DRIVE_FOLDERS, names, (photo, vessels, fov)):
            files.write(subfolder, name, i, pixels)
        stats = vessel_map_stats(vessels > 0, fov > 0)
        records.append({"image": names[0], "vessels": names[1], "fov": names[2], **stats})
    return records


def _label_index(run: LoadedRun, label: Optional[str]) -> int:
    names = run.model.spec.class_names
    if label is None:
        return 0
    if label not in names:
        raise MedisynthError(f"--label {label!r}: the vessel run knows the classes {', '.join(names)}")
    return names.index(label)


def run_pipeline(config: VesselPipelineConfig) -> PipelineResult:
    """Load the runs, synthesise ``config.n`` pairs, write them (atomically) in the DRIVE layout."""
    config.check()
    start = time.perf_counter()
    device = resolve_device(config.device)
    vessel = load_run(config.vessel_run, device, flag="--vessel-run")
    translator = load_run(config.translate_run, device, flag="--translate-run")
    upscaler = load_run(config.sr_run, device, flag="--sr-run") if config.sr_run is not None else None
    _check_run_targets(vessel, translator)
    check_models(vessel.model, translator.model, upscaler.model if upscaler else None)
    notes = []
    vsize, size = vessel.model.spec.image_size, translator.model.spec.image_size
    if vsize != size:
        notes.append(f"vessel maps ({vsize} px) resized to the pix2pix size ({size} px) before denoising")
    pairs = synthesise_pairs(
        vessel.model, translator.model, upscaler.model if upscaler else None, config.n, config.seed,
        config.denoise, config.fov, _label_index(vessel, config.label), config.batch_size,
    )
    from medisynth.progress import progress_bar

    with atomic_dir(Path(config.out), config.overwrite, "vessels", (config.vessel_run, config.translate_run, config.sr_run)) as tmp:
        # the photographs are the translator's (pix2pix, + EDSR) work: its run is named in each file's provenance
        models = "->".join(r.model.name for r in (vessel, translator, upscaler) if r is not None)
        provenance = Provenance(models, str(translator.path), translator.run.id, translator.step, config.seed,
                                vessel.model.spec.class_names[_label_index(vessel, config.label)])
        records = write_drive_pairs(progress_bar(pairs, total=config.n, description="vessel pairs"), tmp, config.n,
                                    provenance, config.format)
        out_size = size * (upscaler.model.hyper.scale if upscaler else 1)
        density = float(np.mean([r["vessel_density"] for r in records]))
        if density > MAX_PLAUSIBLE_DENSITY:  # real fundus vessel trees cover ~10-15 % of the FOV (DRIVE: 12 %)
            notes.append(
                f"the vessel maps cover {density:.0%} of the field of view on average (real trees: ~12 %); "
                "the vessel run looks undertrained, or pass a higher --threshold"
            )
        write_json(tmp / "pipeline.json", {
            "pipeline": "vessels (seed 003: vessel VAE -> denoise -> pix2pix -> EDSR)",
            "n": config.n,
            "seed": config.seed,
            "format": config.format,
            "image_size": out_size,
            "runs": {
                "vessel": {"path": str(vessel.path), "model": vessel.model.name, "image_size": vsize},
                "translate": {"path": str(translator.path), "model": translator.model.name, "image_size": size},
                "sr": ({"path": str(upscaler.path), "model": upscaler.model.name, "scale": upscaler.model.hyper.scale}
                       if upscaler else None),
            },
            "denoise": dataclasses.asdict(config.denoise),
            "fov": config.fov,
            "notes": notes,
            "images": records,
        })
    return PipelineResult(Path(config.out), config.n, out_size, vsize, notes, time.perf_counter() - start,
                          config.format)
