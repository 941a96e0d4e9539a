"""DICOM series: choosing a series, and refusing slices that do not stack into one regular volume.

Series are written slice by slice with SimpleITK (position, orientation, instance number and
UIDs set as a scanner would), then broken the ways a copied or exported series breaks: a slice
deleted, duplicated, shifted, tilted or cut off.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from factories import require_file
from LungLiverSegLib import geometry
from LungLiverSegLib.errors import InputImageError
from LungLiverSegLib.imageio import list_dicom_series, read_image

UID = "1.2.826.0.1.3680043.2.1125.9"
STEP = 2.5
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SLICES = 10


def write_dicom_series(  # noqa: PLR0913  (one keyword per way a test breaks a series)
    folder: Path,
    volume: np.ndarray,
    *,
    uid: str = f"{UID}.1",
    description: str = "",
    names: list[str] | None = None,
    positions: list[tuple[float, float, float]] | None = None,
    orientations: list[tuple[float, ...]] | None = None,
) -> list[Path]:
    """One DICOM file per slice ``volume[k]``, written as ``names[k]`` (default ``slice{k}.dcm``)
    at ``positions[k]`` (default (10, -20, 100 + 2.5 k)) with ``orientations[k]`` (default axial)."""
    names = names or [f"slice{k:02d}.dcm" for k in range(len(volume))]
    positions = positions or [(10.0, -20.0, 100 + STEP * k) for k in range(len(volume))]
    orientations = orientations or [AXIAL] * len(volume)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k, plane in enumerate(volume):
        image = sitk.GetImageFromArray(plane)
        image.SetSpacing((0.8, 0.8))
        tags = {
            "0008|0060": "CT",
            "0008|103e": description,
            "0020|000d": f"{UID}.0",
            "0020|000e": uid,
            "0008|0018": f"{uid}.{k + 1}",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{value:.6f}" for value in positions[k]),
            "0020|0037": "\\".join(f"{value:.6f}" for value in orientations[k]),
        }
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / names[k]))
        writer.Execute(image)
    return [folder / name for name in names]


def ct_volume(slices: int = SLICES) -> np.ndarray:
    """Distinct values per slice, so that a misplaced slice shows."""
    return (np.arange(slices * 6 * 7).reshape(slices, 6, 7) - 1000).astype(np.int16)


def axial_positions(zs: list[float]) -> list[tuple[float, float, float]]:
    return [(10.0, -20.0, z) for z in zs]


def tilted(degrees: float) -> tuple[float, ...]:
    """Axial orientation turned about the row (x) axis."""
    angle = np.radians(degrees)
    return (1.0, 0.0, 0.0, 0.0, float(np.cos(angle)), float(np.sin(angle)))


@pytest.fixture
def two_series(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """A folder with two interleaved 3-slice series; file names deliberately out of z order."""
    volumes = {
        f"{UID}.1": np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5),
        f"{UID}.2": -np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5),
    }
    for number, (uid, volume) in enumerate(volumes.items()):
        names = [f"img{slot}_{number}.dcm" for slot in (2, 0, 1)]
        write_dicom_series(tmp_path, volume, uid=uid, description=f"series {number}", names=names)
    return tmp_path, volumes


def test_folder_with_two_series_lists_both(two_series):
    folder, volumes = two_series
    with pytest.raises(InputImageError, match="holds 2 DICOM series") as raised:
        read_image(folder)
    for number, uid in enumerate(volumes):
        assert f"{uid} (series {number}, 3 files)" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_series_uid_picks_a_series_sorted_along_the_slice_normal(two_series):
    folder, volumes = two_series
    uid = list(volumes)[1]
    image = read_image(folder, series_uid=uid)
    assert np.array_equal(image.array, volumes[uid])
    assert np.allclose(image.spacing, (0.8, 0.8, 2.5)) and np.allclose(image.origin, (10, -20, 100))
    assert image.metadata["series_uid"] == uid and image.metadata["modality"] == "CT"
    assert image.metadata["source_path"] == str(folder)


def test_unknown_series_uid_is_refused_with_the_list(two_series):
    folder, volumes = two_series
    with pytest.raises(InputImageError, match=f"has no series 1.2.3.*{next(iter(volumes))}"):
        read_image(folder, series_uid="1.2.3")


def test_list_dicom_series_describes_each_series(two_series):
    folder, volumes = two_series
    found = sorted(list_dicom_series(folder), key=lambda series: series.uid)
    assert [series.uid for series in found] == sorted(volumes)
    assert [(series.description, series.modality, len(series.files)) for series in found] == [
        ("series 0", "CT", 3),
        ("series 1", "CT", 3),
    ]


def test_single_dicom_file_reads_as_one_slice_volume(two_series):
    folder, volumes = two_series
    first_uid = next(iter(volumes))
    image = read_image(folder / "img0_0.dcm")
    assert image.size == (5, 4, 1)
    assert np.array_equal(image.array[0], volumes[first_uid][1])
    assert image.metadata["modality"] == "CT" and image.metadata["series_uid"] == first_uid


def test_a_regular_series_reads_whole_and_silently(tmp_path, capfd):
    write_dicom_series(tmp_path, ct_volume())
    image = read_image(tmp_path)
    assert np.array_equal(image.array, ct_volume()) and np.allclose(image.spacing, (0.8, 0.8, STEP))
    assert capfd.readouterr().err == ""


def test_positions_rounded_within_the_tolerance_read_without_itk_warning_lines(tmp_path, capfd):
    """0.01 mm off (0.4% of the step, decimal rounding): ITK printed "Non uniform sampling" lines."""
    zs = [100 + STEP * k + (0.01 if k == 4 else 0.0) for k in range(SLICES)]
    write_dicom_series(tmp_path, ct_volume(), positions=axial_positions(zs))
    assert read_image(tmp_path).size == (7, 6, SLICES)
    assert capfd.readouterr().err == ""


def refused(folder: Path) -> str:
    """The one-line message naming ``folder`` or a file in it that reading ``folder`` raises."""
    with pytest.raises(InputImageError) as raised:
        read_image(folder)
    message = str(raised.value)
    assert message.startswith(str(folder)) and "\n" not in message
    return message


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        ([4], "slice05.dcm) are 5.00 mm apart, the others 2.50 mm: 1 slice missing"),
        ([4, 5], "slice06.dcm) are 7.50 mm apart, the others 2.50 mm: 2 slices missing"),
    ],
    ids=["one", "two"],
)
def test_missing_slices_are_counted_and_located(tmp_path, missing, expected):
    """ITK read one missing slice on the average step (2.81 mm), misplacing slices by up to 1.25 mm."""
    files = write_dicom_series(tmp_path, ct_volume())
    for number in missing:
        files[number].unlink()
    assert refused(tmp_path) == f"{tmp_path}: slices 4 and 5 (slice03.dcm, {expected}"


@pytest.mark.parametrize(
    ("zs", "turned", "expected"),
    [
        (
            [100 + STEP * min(k, 8) for k in range(SLICES)],
            {},
            "slices 9 and 10 (slice08.dcm, slice09.dcm) lie at the same position, 120.00 mm along",
        ),
        ([100 + STEP * k + (1.0 if k == 5 else 0.0) for k in range(SLICES)], {}, "uneven slice spacing"),
        ([100 + STEP * k for k in range(SLICES)], {5: 5.0}, "slice 6 (slice05.dcm) is tilted 5.00 degrees"),
        ([100 + STEP * k for k in range(SLICES)], {5: 0.5}, "slice 6 (slice05.dcm) is tilted 0.50 degrees"),
    ],
    ids=["duplicate", "shifted along the normal", "tilted", "tilted a little"],
)
def test_slices_off_the_grid_are_refused(tmp_path, zs, turned, expected):
    orientations = [tilted(turned[k]) if k in turned else AXIAL for k in range(SLICES)]
    write_dicom_series(tmp_path, ct_volume(), positions=axial_positions(zs), orientations=orientations)
    assert expected in refused(tmp_path)


def test_a_slice_shifted_sideways_is_refused(tmp_path):
    positions = axial_positions([100 + STEP * k for k in range(SLICES)])
    positions[6] = (12.0, -20.0, positions[6][2])
    write_dicom_series(tmp_path, ct_volume(), positions=positions)
    assert "slice 7 (slice06.dcm) is shifted 2.00 mm sideways against slice 1" in refused(tmp_path)


@pytest.mark.parametrize(
    ("number", "keep"), [(4, 0.5), (SLICES - 1, 0.5), (0, 0.0)], ids=["middle", "last", "empty"]
)
def test_a_cut_off_file_is_named(tmp_path, number, keep):
    """GDCM left a cut-off file out of the series without a word: the last one left no gap at all."""
    files = write_dicom_series(tmp_path, ct_volume())
    content = files[number].read_bytes()
    files[number].write_bytes(content[: int(len(content) * keep)])
    assert (
        refused(tmp_path)
        == f"{files[number]}: DICOM file could not be read (cut off or corrupt); replace or remove it"
    )


def test_a_file_cut_inside_its_pixels_names_the_element(tmp_path):
    files = write_dicom_series(tmp_path, ct_volume())
    files[SLICES - 1].write_bytes(files[SLICES - 1].read_bytes()[:-10])
    assert refused(tmp_path) == (
        f"{files[SLICES - 1]}: DICOM file is cut off or corrupt: element (7FE0,0010) claims 84 bytes, "
        "74 remain; replace or remove it"
    )


def test_files_beside_the_series_that_are_not_slices_are_ignored(tmp_path):
    write_dicom_series(tmp_path, ct_volume())
    (tmp_path / "notes.txt").write_text("exported from PACS\n")
    (tmp_path / "DICOMDIR").write_bytes(bytes(128) + b"DICM" + bytes(64))
    (tmp_path / "._slice00.dcm").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    assert read_image(tmp_path).size == (7, 6, SLICES)


def test_the_command_refuses_a_broken_series_with_one_line_and_status_2(tmp_path):
    """ITK's raw "Non uniform sampling" warning lines came out around the error (or around a result)."""
    series = tmp_path / "series"
    series.mkdir()
    write_dicom_series(series, ct_volume())[4].unlink()
    command = [Path(sys.executable).parent / "lunglivseg", "segment", series, tmp_path / "out.nii.gz"]
    completed = subprocess.run(
        [*map(str, command), "--model", "lungs-ct-3d", "--progress", "none"], capture_output=True, text=True
    )
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1 and completed.stderr.startswith("lunglivseg: error: ")
    assert "1 slice missing" in completed.stderr and not (tmp_path / "out.nii.gz").exists()


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("folder", "size"),
    [
        ("ct_lung_cip_64/ct-64Dicom", (64, 64, 79)),
        ("ct_abdomen_totalseg_example/example_ct_dicom", (512, 512, 20)),
        ("dicom/dcmqi_ct3slice_liver_seg/ct-3slice", (512, 512, 3)),
        ("dicom/lungmask_no_modality_tag", (512, 512, 2)),
    ],
)
def test_real_series_pass_the_slice_checks_silently(shared_data, folder, size, capfd):
    """No false alarm on real scanners' series (decimal-string positions, real header tags), and
    no ITK warning lines: the CIP series made ITK print "Non uniform sampling" for its
    positions 0.0007 mm off."""
    assert read_image(require_file(shared_data / folder)).size == size
    assert capfd.readouterr().err == ""


@pytest.mark.realdata
def test_cip_dicom_folder_matches_its_nrrd(shared_data):
    folder = require_file(shared_data / "ct_lung_cip_64" / "ct-64Dicom")
    from_dicom = read_image(folder)
    from_nrrd = read_image(require_file(shared_data / "ct_lung_cip_64" / "ct-64.nrrd"))
    assert from_dicom.metadata["modality"] == "CT"
    assert np.array_equal(from_dicom.array, from_nrrd.array)
    assert geometry.same_grid(from_dicom, from_nrrd)  # the origins differ by 3e-4 mm (decimal strings)


@pytest.mark.realdata
def test_totalseg_dicom_series_lies_on_the_grid_of_its_labels(shared_data):
    folder = shared_data / "ct_abdomen_totalseg_example"
    ct = read_image(require_file(folder / "example_ct_dicom"))
    labels = read_image(require_file(folder / "example_seg_dicom_on_dicom_grid.nii.gz"))
    assert ct.size == (512, 512, 20) and np.allclose(ct.spacing, (0.9765625, 0.9765625, 2.0))
    assert geometry.same_grid(ct, labels)
    liver = labels.array == 5
    assert liver.any() and -20 < ct.array[liver].mean() < 200  # liver HU, so voxels line up


@pytest.mark.realdata
def test_dicom_without_modality_tag_reads_with_empty_modality(shared_data):
    image = read_image(require_file(shared_data / "dicom" / "lungmask_no_modality_tag"))
    assert image.metadata["modality"] == ""
    assert image.size == (512, 512, 2)


def patched(files: list[Path], old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` (as long) in the DICOM files: a header value SimpleITK would not write."""
    assert len(old) == len(new)
    for path in files:
        assert old in path.read_bytes()
        path.write_bytes(path.read_bytes().replace(old, new))


@pytest.mark.parametrize(
    "spacing", [b"0\\.8  ", b"nan\\.8", b"-1\\.8 ", b"inf\\.8"], ids=["zero", "nan", "negative", "inf"]
)
@pytest.mark.parametrize("read_as", ["series", "one file", "folder of one file"])
def test_a_bad_pixel_spacing_is_refused(tmp_path, spacing, read_as):
    """GDCM read 0, NaN and -1 as 1 mm (inf as 7e-310) and ITK's matrix code printed raw lines."""
    files = write_dicom_series(tmp_path, ct_volume())
    patched(files, b".8\\.8 ", spacing)
    if read_as == "folder of one file":
        for other in files[1:]:
            other.unlink()
    named = files[3] if read_as == "one file" else files[0]
    with pytest.raises(InputImageError) as raised:
        read_image(named if read_as == "one file" else tmp_path)
    value = float(spacing.decode().split("\\")[0])
    assert str(raised.value).startswith(
        f"{named}: voxel spacing ({value:g}, 0.8) mm (header field PixelSpacing)"
    )


def test_degenerate_slice_orientations_are_refused(tmp_path):
    """ITK read a column direction equal to the row direction as an identity direction."""
    files = write_dicom_series(tmp_path, ct_volume())
    patched(files, b"1\\0\\0\\0\\1\\0", b"1\\0\\0\\1\\0\\0")
    assert "image axes ((1, 0, 0), (1, 0, 0)) (header field ImageOrientationPatient)" in refused(tmp_path)


def resident_megabytes() -> int:
    """Memory the process holds now (Linux)."""
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("needs /proc/self/status (Linux) to measure memory")
    return int(status.read_text().split("VmRSS:")[1].split()[0]) // 1024


@pytest.mark.parametrize("whole_series", [True, False], ids=["series", "one file"])
def test_a_corrupt_element_length_is_refused_before_gdcm_allocates_it(tmp_path, whole_series):
    """One flipped byte made an element claim 775 MB: GDCM allocated it on each of the three reads
    of a folder and never freed it (the fuzzer's process grew to 24 GB and was killed)."""
    files = write_dicom_series(tmp_path, ct_volume())
    patched(files[4:5], b"\x02\x00\x03\x00UI", b"\x02\x00\x03\x002I")  # unknown VR: a 4-byte length
    before = resident_megabytes()
    with pytest.raises(
        InputImageError, match=r"slice04.dcm: DICOM file is cut off or corrupt: element \(0002,0003\)"
    ):
        read_image(tmp_path if whole_series else files[4])
    assert resident_megabytes() - before < 100
