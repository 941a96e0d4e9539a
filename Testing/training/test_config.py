"""Training configs: the presets (JSON files listing what differs from the defaults), the JSON
form of a config, and the bundle a config trains."""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
from factories import REPO_ROOT
from LungLiverSegLib import labels, paths
from LungLiverSegLib.bundle.model_json import bundle_from_json, bundle_to_json
from LungLiverSegLib.errors import BundleError
from LungLiverSegTraining.config import (
    PRESETS,
    PRESETS_FOLDER,
    TrainingConfig,
    config_from_json,
    config_to_json,
    load_config,
)
from LungLiverSegTraining.errors import TrainingConfigError

EXPECTED_PRESETS = Path(__file__).with_name("expected_presets.json")
"""Every field of every preset as the preset functions built them before presets became JSON
files (``config_to_json`` of each). A deliberate change to a preset updates it here too."""


def expected(name: str) -> dict:
    return json.loads(EXPECTED_PRESETS.read_text(encoding="utf-8"))[name]


def defaults() -> dict[str, object]:
    """``TrainingConfig``'s default per field (fields without one are absent)."""
    values: dict[str, object] = {}
    for item in fields(TrainingConfig):
        if item.default is not MISSING:
            values[item.name] = item.default
        elif item.default_factory is not MISSING:
            values[item.name] = item.default_factory()
    return values


def test_the_presets_are_the_json_files_of_the_presets_folder():
    """The folder the core lists for the Slicer module (``paths.presets_dir``) is this one."""
    assert (
        paths.presets_dir().resolve()
        == (REPO_ROOT / "Training" / "LungLiverSegTraining" / "presets").resolve()
    )
    files = sorted(path.name for path in PRESETS_FOLDER.iterdir())
    assert files == [f"{name}.json" for name in PRESETS]
    assert tuple(sorted(json.loads(EXPECTED_PRESETS.read_text(encoding="utf-8")))) == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_is_field_by_field_the_config_it_was(name):
    """A preset file lists only what differs from the defaults, so this also catches a changed
    default that would silently change a preset."""
    actual = config_to_json(load_config(name))
    assert actual == expected(name)
    # the same JSON text: no int where a float was (1 == 1.0 for the comparison above)
    assert json.dumps(actual, sort_keys=True) == json.dumps(expected(name), sort_keys=True)


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_file_lists_only_what_differs_from_the_defaults(name):
    listed = json.loads(PRESETS_FOLDER.joinpath(f"{name}.json").read_text(encoding="utf-8"))
    default = defaults()
    restated = [key for key, value in listed.items() if key in default and value == default[key]]
    assert restated == []


@pytest.mark.parametrize("name", PRESETS)
def test_preset_terminology_is_the_one_in_labels_py(name):
    """The JSON spells the SNOMED-CT codes; they must be the ones ``labels.py`` defines."""
    for info in load_config(name).bundle_template().labels.values():
        assert info.category == labels.ANATOMICAL_STRUCTURE
        assert info.type == (labels.LUNG if "lung" in info.name else labels.LIVER)
        side = info.name.split()[0]
        assert info.modifier == {"right": labels.RIGHT, "left": labels.LEFT}.get(side)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_configs_round_trip_through_json(name, tmp_path):
    config = load_config(name)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_to_json(config)))
    assert load_config(str(path)) == config
    assert config.bundle_template().name == name


def test_an_unknown_preset_or_missing_file_names_the_presets(tmp_path):
    with pytest.raises(TrainingConfigError, match=r"neither a preset .*phantom-ct-3d.* nor a JSON file"):
        load_config(str(tmp_path / "lungs-ct-4d.json"))


def test_config_errors_name_the_field():
    data = config_to_json(load_config("phantom-ct-3d"))
    with pytest.raises(TrainingConfigError, match="unknown fields: colour"):
        config_from_json({**data, "colour": 1})
    with pytest.raises(TrainingConfigError, match=re.escape("preprocessing.spacing")):
        config_from_json({**data, "preprocessing": {**data["preprocessing"], "spacing": [1.0, 2.0]}})
    with pytest.raises(TrainingConfigError, match="epochs"):
        config_from_json({**data, "epochs": 0})


def test_a_configs_bundle_has_no_weights_and_cannot_pass_for_one_that_has():
    template = load_config("phantom-ct-3d").bundle_template()
    assert template.weights_sha256 == ""
    document = bundle_to_json(template)
    with pytest.raises(BundleError, match=re.escape("weights.sha256")):
        bundle_from_json(document, "memory")
    del document["weights"]
    with pytest.raises(BundleError, match="weights"):
        bundle_from_json(document, "memory")
    assert bundle_from_json(document, "memory", with_weights=False) == template
