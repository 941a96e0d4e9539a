"""Batch staging on a real headless scene: unique safe names, links, and refused inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer", reason="needs slicer-core (pip install 'slicer-core==5.11.*')")

from LungLiverSegLib.errors import InputImageError
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio import read_image, write_image
from LungLiverSegLib.slicer_module.mrml_bridge import volume_node_from_image
from LungLiverSegLib.slicer_module.scene import create_headless_scene
from LungLiverSegLib.slicer_module.staging import stage_batch

pytestmark = pytest.mark.slicer

IMAGE = Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), (1.0, 2.0, 3.0), (0.0, 0.0, 0.0), np.eye(3))


def test_nodes_and_files_get_unique_safe_names_and_their_labels_a_seg_nrrd(tmp_path: Path):
    scene = create_headless_scene()
    first, second = (volume_node_from_image(scene, IMAGE, "CT: chest/1") for _ in range(2))
    upper = write_image(tmp_path / "a" / "CT_chest_1.NII.GZ", IMAGE)
    spaced = write_image(tmp_path / "b" / "from disk.mha", IMAGE)
    cases = stage_batch([first, second, upper, spaced], tmp_path / "in", tmp_path / "out")

    staged = sorted(path.name for path in (tmp_path / "in").iterdir())
    assert staged == ["CT_chest_1.nrrd", "CT_chest_1_2.nrrd", "CT_chest_1_3.nii.gz", "from_disk.mha"]
    assert [case.label_path.name for case in cases] == [
        "CT_chest_1.seg.nrrd",
        "CT_chest_1_2.seg.nrrd",
        "CT_chest_1_3.seg.nrrd",
        "from_disk.seg.nrrd",
    ]
    assert [case.volume_node for case in cases] == [first, second, None, None]
    np.testing.assert_array_equal(read_image(tmp_path / "in" / "CT_chest_1_2.nrrd").array, IMAGE.array)
    assert (tmp_path / "in" / "from_disk.mha").resolve() == spaced.resolve()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ct.mhd", "single image files"),
        ("labels.seg.nrrd", "single image files"),
        ("missing.nrrd", "no such"),
    ],
)
def test_inputs_that_cannot_be_staged_are_refused_by_name(tmp_path: Path, name: str, message: str):
    if name != "missing.nrrd":
        write_image(tmp_path / name.replace(".mhd", ".mha"), IMAGE).rename(tmp_path / name)
    with pytest.raises(InputImageError, match=message) as error:
        stage_batch([tmp_path / name], tmp_path / "in", tmp_path / "out")
    assert name in str(error.value)
