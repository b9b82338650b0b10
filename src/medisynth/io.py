"""File helpers: atomic outputs, image reading with clear errors, PNG writing.

``read_image`` also decodes single 2-D DICOM and NIfTI images whose pixels are 8-bit (what
``medisynth pipeline vessels --format dicom|nifti`` writes), so a pair layout of such files reads
like one of PNGs; scans with intensities (CT in HU) go through prepare's dicom/nifti sources,
which window them, using ``read_dicom_frame`` and ``read_nifti`` from here.

Nothing is ever half-written: outputs go to a temporary sibling and are renamed
into place only when complete. Inputs are only ever opened for reading.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from medisynth.errors import MedisynthError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".ppm")
#: medical file names ``read_image`` decodes (one 2-D image of 8-bit pixels each)
SCAN_SUFFIXES = (".dcm", ".nii", ".nii.gz")


@contextlib.contextmanager
def atomic_dir(final: Path, overwrite: bool = False, kind: str = "output", inputs=()) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``final`` only if the block succeeds.

    The folder is marked as a medisynth output of ``kind``; an existing ``final`` is replaced only
    when ``medisynth.outputs.check_output`` allows it (checked before and again after the block).
    """
    from medisynth.outputs import check_output, write_marker

    final = Path(final)
    check_output(final, overwrite, kind, inputs)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result should have ordinary permissions
    try:
        yield tmp
        write_marker(tmp, kind)
        check_output(final, overwrite, kind, inputs)  # the block took a while: the target may have changed
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        trash = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def follow_umask(path: Path) -> None:
    """Give a file (or folder) the ordinary permissions of the user's umask: writers such as mkdtemp and
    safetensors make 0700/0600, which a colleague on a shared server cannot read."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result should have ordinary permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: Path):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MedisynthError(f"{path} is missing") from None
    except json.JSONDecodeError as e:
        raise MedisynthError(f"{path} is not valid JSON ({e}); the file is damaged, re-create it") from None


def read_image(path: Path, channels: int | None = None, skip_flag: str | None = "--skip-bad") -> np.ndarray:
    """Decode an image file to uint8 HxWxC (C = 1 or 3); also a DICOM/NIfTI file of one 8-bit 2-D image.

    ``skip_flag`` is the calling command's flag that skips bad files, suggested in the error
    (None where the command has no such flag).

    RGBA is composited on black, palette and 16-bit images are converted
    (16-bit scaled to 8 bits by its own range is NOT done: values are divided by 257),
    and anything PIL cannot fully decode raises a MedisynthError naming the file.
    """
    path = Path(path)
    if is_scan_name(path.name):
        array = _scan_image(path, skip_flag)
        return convert_channels(array, channels) if channels is not None else array
    try:
        with Image.open(path) as img:
            img.load()
            array = _to_uint8(img)
    except FileNotFoundError:
        raise MedisynthError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise MedisynthError(
            f"{path}: cannot decode image ({e}); the file is truncated or not an image. "
            + (f"Replace it, remove it, or pass {skip_flag} to skip it" if skip_flag else "Replace it or remove it")
        ) from None
    if channels is not None:
        array = convert_channels(array, channels)
    return array


def is_scan_name(name: str) -> bool:
    """Whether a file name is DICOM (.dcm) or NIfTI (.nii, .nii.gz)."""
    return name.lower().endswith(SCAN_SUFFIXES)


def read_dicom_frame(path: Path | str, frame: int = 0, skip_flag: str | None = "--skip-bad") -> np.ndarray:
    """Frame ``frame`` of a DICOM file. Colour (SamplesPerPixel 3; pydicom turns YBR into RGB) comes back as
    uint8 H x W x 3; grayscale after the modality transform (``pydicom.pixels.apply_modality_lut``: a Modality
    LUT Sequence when present, else RescaleSlope/RescaleIntercept; for CT, Hounsfield units) as float32 H x W,
    MONOCHROME1 inverted so that bright means high everywhere."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    skip = f", or pass {skip_flag}" if skip_flag else ""
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except Exception as e:  # pydicom raises many types for bad or compressed files
        raise MedisynthError(
            f"{path}: cannot read DICOM pixels ({type(e).__name__}: {e}); the file is damaged or uses a "
            f"compression pydicom cannot decode here (install pylibjpeg){skip}"
        ) from None
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[frame]
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) == 3:
        if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
            raise MedisynthError(f"{path}: expected 8-bit RGB pixels, got {pixels.dtype} of shape {pixels.shape}; "
                                 f"convert the file to 8 bits per sample{skip}")
        return np.ascontiguousarray(pixels)  # colour has no modality transform (rescaling is for grayscale)
    if pixels.ndim != 2:
        raise MedisynthError(f"{path}: expected a grayscale or RGB slice, got pixel shape {pixels.shape}")
    try:
        values = apply_modality_lut(pixels, ds).astype(np.float32)
    except Exception as e:  # e.g. an empty RescaleSlope or a damaged Modality LUT Sequence
        raise MedisynthError(
            f"{path}: cannot apply the DICOM modality transform ({type(e).__name__}: {e}); "
            f"fix its RescaleSlope/RescaleIntercept or Modality LUT Sequence{skip}"
        ) from None
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        values = values.max() + values.min() - values  # MONOCHROME1 stores inverted gray levels
    return values


def read_nifti(path: Path | str, skip_flag: str | None = "--skip-bad") -> np.ndarray:
    """A NIfTI volume reoriented to RAS (nibabel ``as_closest_canonical``). RGB volumes (datatype RGB24) come
    back as uint8 X x Y x Z x 3 (NIfTI does not scale RGB), all others as float32 with the header's
    scl_slope/scl_inter applied."""
    import nibabel as nib

    try:
        image = nib.as_closest_canonical(nib.load(path))
        data = np.asarray(image.dataobj)
        if data.dtype.names:  # RGB24 is a structured dtype; an RGBA32 alpha is dropped like PNG's on black
            return np.stack([data[channel] for channel in ("R", "G", "B")], axis=-1).astype(np.uint8)
        return data.astype(np.float32)
    except Exception as e:
        raise MedisynthError(
            f"{path}: cannot read NIfTI volume ({type(e).__name__}: {e}); the file is damaged, replace it"
            + (f" or pass {skip_flag}" if skip_flag else "")
        ) from None


def _scan_image(path: Path, skip_flag: str | None) -> np.ndarray:
    """One 2-D DICOM/NIfTI image of 8-bit pixels as uint8 H x W x C (NIfTI shown as prepare's nifti source shows
    a slice: ``rot90`` of the RAS slice, anterior up)."""
    if path.name.lower().endswith(".dcm"):
        array = read_dicom_frame(path, 0, skip_flag)
    else:
        volume = read_nifti(path, skip_flag)
        spatial = volume.shape[:-1] if volume.dtype == np.uint8 else volume.shape
        if len(spatial) == 2:
            volume, spatial = volume[:, :, None], spatial + (1,)
        if len(spatial) != 3 or spatial[2] != 1:
            raise MedisynthError(f"{path}: holds a volume of shape {spatial}, not one 2-D image; read its slices "
                                 "with `medisynth prepare --source nifti`")
        array = np.ascontiguousarray(np.rot90(volume[:, :, 0]))
    if array.dtype != np.uint8:
        finite = np.isfinite(array).all()
        if not finite or array.min() < 0 or array.max() > 255 or not np.array_equal(array, np.round(array)):
            span = f"{np.nanmin(array):g}..{np.nanmax(array):g}" if finite else "non-finite values"
            raise MedisynthError(
                f"{path}: holds {span}, not 8-bit pixels; read scans with intensities through "
                "`medisynth prepare --source dicom|nifti --window-level L --window-width W`"
            )
        array = array.astype(np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _to_uint8(img: Image.Image) -> np.ndarray:
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        a = np.clip(a / 257.0, 0, 255) if a.max() > 255 else a
        return np.round(a).astype(np.uint8)[..., None]
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        return np.round(a).astype(np.uint8)[..., None]
    if img.mode in ("RGBA", "LA"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        rgb = rgba[..., :3] * (rgba[..., 3:4] / 255.0)
        a = np.round(rgb).astype(np.uint8)
        return a[..., :1] if img.mode == "LA" else a
    if img.mode == "1":
        return (np.asarray(img, dtype=np.uint8) * 255)[..., None]
    if img.mode == "L":
        return np.asarray(img, dtype=np.uint8)[..., None]
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def convert_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """uint8 HxWxC -> HxWx``channels`` (ITU-R 601 luma for RGB -> gray)."""
    if array.ndim == 2:
        array = array[..., None]
    have = array.shape[-1]
    if have == channels:
        return array
    if channels == 1 and have == 3:
        gray = array.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.round(gray).clip(0, 255).astype(np.uint8)[..., None]
    if channels == 3 and have == 1:
        return np.repeat(array, 3, axis=-1)
    raise MedisynthError(f"cannot convert a {have}-channel image to {channels} channels")


PNG_COMPRESS_LEVEL = 4  # PNG is lossless at every level; a low one keeps large sample folders quick to write


def write_png(path: Path, array: np.ndarray, text: dict[str, str] | None = None, atomic: bool = True) -> None:
    """Write uint8 HxW, HxWx1 or HxWx3 as PNG: medisynth's one PNG writer.

    ``text`` becomes PNG text chunks (iTXt, so any UTF-8 survives; e.g. ``Provenance.png_text()``).
    ``atomic=False`` writes in place: for files inside an ``atomic_dir`` folder, which appears whole
    by one rename, so a per-file rename and fsync would only cost time."""
    data = png_bytes(array, text)
    if atomic:
        atomic_write_bytes(path, data)
    else:
        Path(path).write_bytes(data)


def png_bytes(array: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """uint8 HxW, HxWx1 or HxWx3 encoded as PNG, with ``text`` as iTXt chunks (``write_png`` writes these bytes)."""
    import io as _io

    from PIL.PngImagePlugin import PngInfo

    array = np.ascontiguousarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_itxt(str(key), str(value))
    buf = _io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, pnginfo=info)
    return buf.getvalue()


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
