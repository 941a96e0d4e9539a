"""One-call Python API, like TotalSegmentator's ``totalsegmentator(input, output)``.

    from LungLiverSegLib.api import segment
    labels = segment("ct.nii.gz", "lungs.seg.nrrd", model="lungs-ct-3d")

Everything goes through ``segmentation.segment.segment_image``; this module only adds file handling.
"""

from __future__ import annotations

from pathlib import Path

from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio import check_output_path, read_image, write_segmentation
from LungLiverSegLib.progress import Progress, StageClock
from LungLiverSegLib.segmentation.segment import LoadedModel, load_model, segment_image


def segment(  # noqa: PLR0913  (the public one-call API: keyword options, like TotalSegmentator's)
    input: str | Path | Image,
    output: str | Path | None = None,
    model: str | Path | LoadedModel = "lungs-ct-3d",
    *,
    device: str = "auto",
    overlap: float | None = None,
    batch_size: int | None = None,
    series_uid: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    clock: StageClock | None = None,
) -> Image:
    """Segment one image (a file, a DICOM folder or an ``Image``); write ``output`` when given.

    ``clock`` (when given) says where the time went: seconds per stage (read, preprocess,
    network, back to grid, postprocess, write)."""
    if output is not None:
        check_output_path(output, overwrite=overwrite)  # before minutes of work, not after
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device)
    clock = clock or StageClock()
    with clock.stage("read"):
        image = input if isinstance(input, Image) else read_image(input, series_uid=series_uid)
    labels = segment_image(
        image, loaded, overlap=overlap, batch_size=batch_size, progress=progress, clock=clock
    )
    if output is not None:
        with clock.stage("write"):
            save_labels(output, labels, loaded, overwrite=overwrite)
    return labels


def save_labels(path: str | Path, labels: Image, model: LoadedModel, *, overwrite: bool = False) -> Path:
    """Write labels: ``.seg.nrrd`` gets the bundle's segment names/colours/terminology."""
    return write_segmentation(path, labels, model.bundle.labels, overwrite=overwrite)
