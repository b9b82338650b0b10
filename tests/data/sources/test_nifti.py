"""NIfTI volumes: RGB24 volumes (colour slices) are read as 8-bit RGB, not windowed as intensities."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medisynth.data.prepare import PrepareConfig, prepare
from medisynth.data.sources.nifti import NiftiSlice, NiftiSource

RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])


def write_rgb_volume(path, volume: np.ndarray) -> None:
    """uint8 X x Y x Z x 3 -> a NIfTI RGB24 volume, written with nibabel alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(volume).view(RGB24)[..., 0], np.eye(4)), path)


@pytest.mark.parametrize("slices,padding", [(1, ()), (3, (0,))])
def test_rgb24_slices_read_back_as_colour_pixels(tmp_path, slices, padding):
    volume = np.random.default_rng(slices).integers(0, 256, (16, 12, slices, 3), dtype=np.uint8)
    for k in padding:  # a constant slice is padding: left out, as for grayscale volumes
        volume[:, :, k] = 7
    kept = [k for k in range(slices) if k not in padding]
    write_rgb_volume(tmp_path / "nii" / "eyes" / "photos.nii.gz", volume)
    records = list(NiftiSource(tmp_path / "nii").records())
    assert [r.id for r in records] == [f"eyes/photos#z{k:04d}" for k in kept]
    assert all(r.raw_intensity is False for r in records)
    for record, k in zip(records, kept):
        assert np.array_equal(NiftiSlice(str(record.path), k)(), np.rot90(volume[:, :, k]))
    result = prepare(PrepareConfig(source=tmp_path / "nii", out=tmp_path / "out", size=16, workers=1), progress=False)
    assert result.manifest.channels == 3 and result.manifest.num_images == len(kept)
    index = pd.read_csv(tmp_path / "out" / "index.csv", dtype={"id": str})
    images = np.load(tmp_path / "out" / "images-00000.npy")
    for row in index.itertuples():
        # 16 x 12 slices (shown 12 x 16) are padded to 16 x 16 by prepare: compare the image inside the padding
        shown = np.rot90(volume[:, :, int(row.id[-4:])])
        top, left = (16 - shown.shape[0]) // 2, (16 - shown.shape[1]) // 2
        assert np.array_equal(images[row.row][top:top + shown.shape[0], left:left + shown.shape[1]], shown)
