"""The model card (README.md) generated from a bundle's fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from LungLiverSegLib.bundle.model_json import _intensity_to_json, _optional_list
from LungLiverSegLib.bundle.spec import ModelBundle
from LungLiverSegLib.tables import markdown_table


def _metric_rows(validation: Mapping[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("metric", "segment", "value")]
    for metric, value in validation.items():
        per_segment = value if isinstance(value, dict) else {"": value}
        rows += [(metric, segment, str(score)) for segment, score in per_segment.items()]
    return rows


def _card_labels(bundle: ModelBundle) -> str:
    rows = [("value", "segment", "SNOMED-CT type")]
    rows += [
        (str(value), label.name, " / ".join(label.type or ("-",))) for value, label in bundle.labels.items()
    ]
    return markdown_table(rows)


def _card_preprocessing(bundle: ModelBundle) -> list[str]:
    pre, post = bundle.preprocessing, bundle.postprocessing
    return [
        f"- orientation: {pre.orientation or 'as stored'}",
        f"- spacing (mm): {_optional_list(pre.spacing) or 'as stored'}",
        f"- intensity: {_intensity_to_json(pre.intensity)}; body crop: {pre.body_crop or 'none'}",
        f"- patch {list(bundle.inference.patch_size)}, overlap {bundle.inference.overlap}; "
        f"warns above an unsure ratio of {bundle.inference.unsure_ratio_limit or 'the default'}"
        f"{' and on intensities unlike every training image' if bundle.inference.input_histogram else ''}",
        f"- post-processing: largest component {list(post.largest_component)}, "
        f"fill holes {list(post.fill_holes)}, minimum volume {post.min_volume_ml} ml; "
        f"density check: {post.density_check or 'none'}",
    ]


def model_card(bundle: ModelBundle) -> str:
    """A README.md generated from the bundle's fields, for bundles written without a hand-made card."""
    provenance = [f"- {key}: {value}" for key, value in bundle.provenance.items()] or ["- not recorded"]
    metrics = markdown_table(_metric_rows(bundle.validation)) if bundle.validation else "Not validated."
    lines = [
        f"# {bundle.title}",
        "",
        f"`{bundle.name}` version {bundle.version}. Licence: {bundle.license}.",
        "",
        bundle.description,
        "",
        "## Intended use",
        "",
        f"Research segmentation of {bundle.modality} images ({bundle.dims}D network, "
        f"{bundle.in_channels} input channel(s)). Not a medical device: review every result.",
        "",
        "## Labels",
        "",
        _card_labels(bundle),
        "",
        "## Preprocessing and post-processing",
        "",
        *_card_preprocessing(bundle),
        "",
        "## Provenance",
        "",
        *provenance,
        "",
        "## Validation",
        "",
        metrics,
        "",
        "## Limits",
        "",
        f"Validated only on the data named above. Images from other scanners, protocols, modalities than "
        f"{bundle.modality}, or with pathology unlike the training data may be segmented wrongly.",
        "",
    ]
    return "\n".join(lines)
