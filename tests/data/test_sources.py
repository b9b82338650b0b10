"""Source layouts: detection, records, and their clear errors (tiny files made in each layout)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medisynth.data.prepare import PrepareConfig, prepare
from medisynth.data.sources import detect_source, get_source
from medisynth.errors import MedisynthError


def run(source, out, **kw):
    kw.setdefault("size", 16)
    kw.setdefault("workers", 1)
    return prepare(PrepareConfig(source=source, out=out, **kw), progress=False)


def index_of(out):
    return pd.read_csv(out / "index.csv", dtype={"id": str, "group": str, "class_name": str})


# ---------------------------------------------------------------- csv conventions
def make_csv_set(root, header, rows, image_dir, ext=".png", helpers=None, write_ext=True):
    lines = [",".join(header)]
    for i, (image_id, label) in enumerate(rows):
        name = image_id if (not write_ext or image_id.endswith(ext)) else image_id + ext
        helpers.write_image(root / image_dir / name, helpers.noise_image(i))
        lines.append(f"{image_id},{label}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize(
    "header,image_dir,ext,ids",
    [
        (("id_code", "diagnosis"), "train_images", ".png", [f"000c1434d8d{i}" for i in range(10)]),  # APTOS 2019
        (("image", "level"), "train", ".jpeg", [f"{i // 2}_{'left' if i % 2 else 'right'}" for i in range(10)]),  # EyePACS
        (("Image name", "Retinopathy grade"), "1. Original Images", ".jpg", [f"IDRiD_{i:03d}" for i in range(1, 11)]),
        (("Image", "Retinopathy grade"), "Base11", ".tif", [f"20051019_3855{i}_0100_PP.tif" for i in range(10)]),  # Messidor
        (("image", "label"), "images", ".png", [f"im{i}" for i in range(10)]),  # medisynth
    ],
)
def test_csv_conventions(tmp_path, helpers, header, image_dir, ext, ids):
    root = make_csv_set(tmp_path / "set", header, [(x, i % 2) for i, x in enumerate(ids)], image_dir, ext, helpers)
    assert detect_source(root).name == "csv"
    result = run(root, tmp_path / "out")
    index = index_of(tmp_path / "out")
    assert result.manifest.num_images == 10
    assert result.manifest.class_names == ["0", "1"]
    assert sorted(index["class_name"]) == sorted(str(i % 2) for i in range(10))
    if header == ("image", "level"):  # EyePACS: one group per patient
        assert set(index["group"]) == {str(i) for i in range(5)}
        assert (index.groupby("group")["split"].nunique() == 1).all()


def test_fundus_grading_csv_crops_by_default(tmp_path, helpers):
    root = tmp_path / "aptos"
    lines = ["id_code,diagnosis"]
    for i in range(4):
        helpers.write_image(root / "train_images" / f"x{i}.png", helpers.fundus_like(i))
        lines.append(f"x{i},{i % 2}")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    result = run(root, tmp_path / "out", size=32)
    assert result.manifest.preprocessing["kind"] == "fundus"
    assert result.manifest.has_fov


def test_csv_custom_columns_and_image_dir(tmp_path, helpers):
    root = tmp_path / "custom"
    lines = ["file,grade,notes"]
    for i in range(6):
        helpers.write_image(root / "pics" / f"p{i}.jpg", helpers.noise_image(i))
        lines.append(f"p{i}.jpg,{'yes' if i % 2 else 'no'},x")
    (root / "meta.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(MedisynthError, match="--id-column"):
        run(root, tmp_path / "out0", source_kind="csv")
    with pytest.raises(MedisynthError, match="nope"):
        run(root, tmp_path / "out1", source_options={"id_column": "nope", "label_column": "grade"})
    result = run(root, tmp_path / "out", source_options={"id_column": "file", "label_column": "grade", "image_dir": "pics"})
    assert result.manifest.class_names == ["no", "yes"] and result.manifest.num_images == 6


def test_image_folder_with_masks_and_fov(tmp_path, helpers):
    root = tmp_path / "synthetic"
    lines = ["image,label,mask,fov,synthetic"]
    for i in range(5):
        helpers.write_image(root / "images" / f"s{i}.png", helpers.noise_image(i, size=(20, 20)))
        m = np.zeros((20, 20), np.uint8)
        m[5:15, 8:12] = 255
        helpers.write_image(root / "masks" / f"s{i}.png", m)
        helpers.write_image(root / "fov" / f"s{i}.png", np.full((20, 20), 255, np.uint8))
        lines.append(f"s{i},{i % 2},masks/s{i}.png,fov/s{i}.png,1")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    result = run(root, tmp_path / "out")
    assert result.manifest.has_masks and result.manifest.has_fov
    masks = np.load(tmp_path / "out" / "masks-00000.npy")
    assert masks.shape == (5, 16, 16) and set(np.unique(masks).tolist()) == {0, 255}


@pytest.mark.parametrize(
    "bad_row,match",
    [
        ("ghost,1", "ghost.*not found"),  # a row naming a missing file
        ("im01,0", "im01.*already appears in row"),  # a duplicate id
        ("extra,", "has no 'label'"),  # an empty label
        ("notes.txt,1", "not an image file"),  # a non-image file
    ],
)
def test_csv_bad_rows(image_folder, tmp_path, bad_row, match):
    (image_folder / "notes.txt").write_text("hello")
    (image_folder / "images" / "notes.txt").write_text("hello")
    with open(image_folder / "labels.csv", "a") as f:
        f.write(bad_row + "\n")
    with pytest.raises(MedisynthError, match=match) as err:
        run(image_folder, tmp_path / "out")
    assert "labels.csv row 32" in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing half-written
    result = run(image_folder, tmp_path / "out", skip_bad=True)
    assert result.manifest.num_images == 30
    assert len(result.manifest.skipped) == 1 and "row 32" in result.manifest.skipped[0]["item"]


def test_label_outside_classes(image_folder, tmp_path):
    with pytest.raises(MedisynthError, match="'c' is not one of the classes"):
        run(image_folder, tmp_path / "out", classes=["a", "b"])
    result = run(image_folder, tmp_path / "out", classes=["a", "b"], skip_bad=True)
    assert result.manifest.class_names == ["a", "b"] and len(result.manifest.skipped) == 10


def test_classes_fix_the_order_and_empty_class_is_an_error(image_folder, tmp_path):
    result = run(image_folder, tmp_path / "out", classes=["c", "b", "a"])
    assert result.manifest.class_names == ["c", "b", "a"]
    index = index_of(tmp_path / "out")
    assert (index.loc[index["class_name"] == "c", "label"] == 0).all()
    with pytest.raises(MedisynthError, match="class.*d have no images"):
        run(image_folder, tmp_path / "out2", classes=["a", "b", "c", "d"])


# ---------------------------------------------------------------- class folders
def test_class_folders_descend_into_single_subfolder(class_folders, tmp_path):
    assert detect_source(class_folders).name == "folders"
    result = run(class_folders, tmp_path / "out")
    assert result.manifest.class_names == ["Cyst", "Normal", "Stone"]
    assert result.manifest.channels == 1 and result.manifest.preprocessing["kind"] == "none"
    assert "Cyst/Cyst- (1)" in set(index_of(tmp_path / "out")["id"])
    # the folder holding the class folders works too
    assert run(class_folders / "Training", tmp_path / "out2").manifest.num_images == 24


def test_empty_class_folder(class_folders, tmp_path):
    (class_folders / "Training" / "Tumor").mkdir()
    with pytest.raises(MedisynthError, match="Tumor: class folder holds no images"):
        run(class_folders, tmp_path / "out", source_kind="folders")
    result = run(class_folders, tmp_path / "out", source_kind="folders", skip_bad=True)
    assert result.manifest.class_names == ["Cyst", "Normal", "Stone"] and len(result.manifest.skipped) == 1


def test_non_image_file_in_class_folder(class_folders, tmp_path):
    (class_folders / "Training" / "Cyst" / "readme.md").write_text("x")
    (class_folders / "Training" / "Cyst" / ".DS_Store").write_text("x")  # junk is ignored silently
    with pytest.raises(MedisynthError, match="readme.md: not an image file"):
        run(class_folders, tmp_path / "out")
    assert len(run(class_folders, tmp_path / "out", skip_bad=True).manifest.skipped) == 1


# ---------------------------------------------------------------- image + vessel mask pairs
def _pair(helpers, image_path, vessel_path, fov_path, seed):
    image = helpers.fundus_like(seed, width=60, height=50, centre=(30, 25), radius=20)
    helpers.write_image(image_path, image)
    vessel = np.zeros(image.shape[:2], np.uint8)
    vessel[20:30, 10:50] = 255
    helpers.write_image(vessel_path, vessel)
    if fov_path is not None:
        helpers.write_image(fov_path, (image.max(axis=-1) > 10).astype(np.uint8) * 255)


def test_drive_layout(tmp_path, helpers):
    root = tmp_path / "DRIVE"
    for part, numbers in (("training", range(21, 25)), ("test", range(1, 4))):
        for n in numbers:
            _pair(helpers, root / part / "images" / f"{n:02d}_{part}.png", root / part / "1st_manual" / f"{n:02d}_manual1.png",
                  root / part / "mask" / f"{n:02d}_{part}_mask.png", n)
    helpers.write_image(root / "test" / "2nd_manual" / "01_manual2.png", np.zeros((50, 60), np.uint8))
    assert detect_source(root).name == "pairs"
    result = run(root, tmp_path / "out")
    m = result.manifest
    assert m.num_images == 7 and m.has_masks and m.has_fov and m.class_names == ["unlabelled"]
    assert m.preprocessing["kind"] == "fundus"
    index = index_of(tmp_path / "out")
    assert sorted(index["origin"].value_counts().items()) == [("test", 3), ("training", 4)]


def test_hrf_layout_missing_masks(tmp_path, helpers):
    root = tmp_path / "HRF"
    for i, cls in enumerate(["h", "dr", "g"] * 2):
        stem = f"{i // 3 + 1:02d}_{cls}"
        vessel = root / "manual1" / f"{stem}.tif"
        _pair(helpers, root / "images" / f"{stem}.png", vessel, root / "mask" / f"{stem}_mask.tif", i)
    (root / "manual1" / "02_h.tif").unlink()
    with pytest.raises(MedisynthError, match=r"1 image\(s\) without annotation.*02_h.png"):
        run(root, tmp_path / "out")
    result = run(root, tmp_path / "out", skip_bad=True)
    assert result.manifest.class_names == ["dr", "glaucoma", "healthy"]
    assert result.manifest.num_images == 5 and [s["item"].endswith("02_h.png") for s in result.manifest.skipped] == [True]


def test_chase_layout(tmp_path, helpers):
    root = tmp_path / "CHASE"
    for n in range(1, 4):
        for eye in "LR":
            _pair(helpers, root / f"Image_{n:02d}{eye}.jpg", root / f"Image_{n:02d}{eye}_1stHO.png", None, n * 2 + (eye == "R"))
    assert detect_source(root).name == "pairs"
    result = run(root, tmp_path / "out")
    assert result.manifest.num_images == 6 and result.manifest.has_masks
    index = index_of(tmp_path / "out")
    assert (index.groupby("group")["split"].nunique() == 1).all() and index["group"].nunique() == 3


# ---------------------------------------------------------------- MedMNIST npz
def test_medmnist_keeps_the_official_split(tmp_path):
    from medisynth.training.toy import write_toy_medmnist

    counts = {"train": 30, "val": 6, "test": 8}
    npz = write_toy_medmnist(tmp_path / "tinymnist.npz", {split: np.arange(n) % 2 for split, n in counts.items()})
    arrays = np.load(npz)
    assert detect_source(tmp_path).name == "medmnist"
    result = run(tmp_path / "tinymnist.npz", tmp_path / "out", size=28)
    counts = result.manifest.counts
    assert {s: sum(c.values()) for s, c in counts.items()} == {"train": 30, "val": 6, "test": 8}
    assert result.manifest.class_names == ["0", "1"]
    images = np.load(tmp_path / "out" / "images-00000.npy")
    index = index_of(tmp_path / "out")
    row = index[index["id"] == "val_00003"].iloc[0]
    assert np.array_equal(images[row["row"], ..., 0], arrays["val_images"][3])  # pixels unchanged at 28 px


def test_medmnist_classes_are_named_with_rename_classes(tmp_path):
    from medisynth.data.dataset import PreparedDataset
    from medisynth.training.toy import write_toy_medmnist

    write_toy_medmnist(tmp_path / "pneumoniamnist.npz", {"train": [0, 1, 1, 1, 0, 1], "val": [0, 1], "test": [1, 0]})
    result = run(tmp_path / "pneumoniamnist.npz", tmp_path / "out", size=28,
                 rename_classes={"0": "normal", "1": "pneumonia"})
    assert result.manifest.class_names == ["normal", "pneumonia"]
    assert result.manifest.counts["train"] == {"normal": 2, "pneumonia": 4}
    assert result.manifest.source["rename_classes"] == {"0": "normal", "1": "pneumonia"}
    assert set(index_of(tmp_path / "out")["class_name"]) == {"normal", "pneumonia"}
    train = PreparedDataset(tmp_path / "out", "train")
    assert sorted(train.labels.tolist()) == [0, 0, 1, 1, 1, 1]
    # one class renamed keeps the other's name and the source's order
    assert run(tmp_path / "pneumoniamnist.npz", tmp_path / "one", size=28,
               rename_classes={"1": "a pneumonia"}).manifest.class_names == ["0", "a pneumonia"]


@pytest.mark.parametrize("renames, message", [
    ({"2": "x"}, r"no class '2' \(its classes: 0, 1\)"),
    ({"0": "same", "1": "same"}, "two classes would be named same"),
    ({"0": "1"}, "two classes would be named 1"),
    ({"0": "a/b"}, "cannot name a class"),
    ({"0": " padded"}, "cannot name a class"),
    ({0: "normal"}, "class names are strings"),
])
def test_rename_classes_refuses_what_cannot_be_done(tmp_path, renames, message):
    from medisynth.training.toy import write_toy_medmnist

    write_toy_medmnist(tmp_path / "m.npz", {"train": [0, 1, 0, 1], "val": [0, 1], "test": [0, 1]})
    with pytest.raises(MedisynthError, match=message):
        run(tmp_path / "m.npz", tmp_path / "out", size=28, rename_classes=renames)
    assert not (tmp_path / "out").exists()


def test_medmnist_multilabel_is_refused(tmp_path):
    np.savez(tmp_path / "chest.npz", train_images=np.zeros((4, 28, 28), np.uint8), train_labels=np.zeros((4, 14), np.uint8))
    with pytest.raises(MedisynthError, match="multi-label"):
        run(tmp_path / "chest.npz", tmp_path / "out")


# ---------------------------------------------------------------- DICOM / NIfTI
def write_dicom(path, hu: np.ndarray, patient="P1", slope=1.0, intercept=-1024.0):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = patient, "CT"
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    stored = np.round((hu - intercept) / slope).astype(np.uint16)
    ds.PixelData = stored.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def test_dicom_class_folders_and_hu_windowing(tmp_path):
    root = tmp_path / "dcm"
    for c in ("normal", "tumor"):
        for k in range(3):
            hu = np.full((24, 24), -1000.0)
            hu[6:18, 6:18] = 240.0  # level 40 + width 400 / 2 -> 255
            hu[0, 0] = 40.0 + k  # makes each slice unique
            write_dicom(root / c / f"s{k}.dcm", hu, patient=f"{c}{k // 2}")
    (root / "tumor" / "broken.dcm").write_bytes(b"not dicom at all")
    assert detect_source(root).name == "dicom"
    with pytest.raises(MedisynthError, match="broken.dcm"):
        run(root, tmp_path / "out", size=24)
    result = run(root, tmp_path / "out", size=24, skip_bad=True)
    m = result.manifest
    assert m.class_names == ["normal", "tumor"] and m.num_images == 6 and m.preprocessing["kind"] == "ct"
    images = np.load(tmp_path / "out" / "images-00000.npy")
    assert images[:, 1, 1, 0].max() == 0 and images[:, 12, 12, 0].min() == 255
    index = index_of(tmp_path / "out")
    assert (index.groupby("group")["split"].nunique() == 1).all()  # a patient's slices stay together


def test_dicom_unlabelled_flat_folder(tmp_path):
    for k in range(3):
        write_dicom(tmp_path / "flat" / f"{k}.dcm", np.full((16, 16), float(k * 100)))
    result = run(tmp_path / "flat", tmp_path / "out", window_level=100, window_width=200)
    assert result.manifest.class_names == ["unlabelled"]
    images = np.load(tmp_path / "out" / "images-00000.npy")
    by_id = dict(zip(index_of(tmp_path / "out")["id"], index_of(tmp_path / "out")["row"]))
    assert [int(images[by_id[str(k)], 0, 0, 0]) for k in range(3)] == [0, 128, 255]


def test_nifti_axial_slices_skip_empty_and_step(tmp_path):
    import nibabel as nib

    volume = np.full((20, 18, 10), -1000, dtype=np.int16)
    volume[5:15, 4:14, 2:8] = 100  # slices 2..7 hold something, 0-1 and 8-9 are empty air
    volume[0, 0, 2:8] = np.arange(6)
    (tmp_path / "nii" / "cases").mkdir(parents=True)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "nii" / "cases" / "case1.nii.gz")
    assert detect_source(tmp_path / "nii").name == "nifti"
    result = run(tmp_path / "nii", tmp_path / "out")
    assert result.manifest.num_images == 6 and result.manifest.class_names == ["cases"]
    index = index_of(tmp_path / "out")
    assert index["group"].nunique() == 1 and index["id"].iloc[0] == "cases/case1#z0002"
    stepped = run(tmp_path / "nii", tmp_path / "out2", source_options={"slice_step": 2})
    assert stepped.manifest.num_images == 3


def test_option_for_another_layout_is_refused(class_folders, tmp_path):
    with pytest.raises(MedisynthError, match="--slice-step"):
        run(class_folders, tmp_path / "out", source_options={"slice_step": 2})


def test_unknown_layout(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.txt").write_text("x")
    with pytest.raises(MedisynthError, match="cannot tell the layout"):
        run(tmp_path / "x", tmp_path / "out")
    with pytest.raises(MedisynthError, match="unknown source"):
        get_source("zip")
