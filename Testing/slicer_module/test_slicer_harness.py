"""The module in Slicer's own Python layer (v5.10.0 and v5.12.3), on Slicer's Python 3.12 with only
what Slicer bundles: it loads, names what is missing, and its Module, Widget and Logic work with
Slicer's real base classes and parameter node wrapper (review §1, §3, §4, §14).

What runs is ``slicer_harness/run_module.py``; ``harness_report`` (conftest) gives its report. What
it cannot cover: a real Qt event loop and real widgets (``pythonqt.py`` stands in for PythonQt),
rendering, and the child processes' work.
"""

from __future__ import annotations

import pytest
from slicer_module.slicer_harness.harness import SLICER_REFERENCE, SLICER_TAGS

NOT_BUNDLED = ["matplotlib", "monai", "safetensors", "torch"]

pytestmark = [pytest.mark.slicer, pytest.mark.slow, pytest.mark.parametrize("tag", SLICER_TAGS)]


def assert_steps_ok(report: dict, *steps: str) -> None:
    """Each failed step with the last line of its traceback (the error)."""
    outcomes = {step: report["steps"].get(step, "not run") for step in steps}
    failed = {step: outcome.strip().splitlines()[-1] for step, outcome in outcomes.items() if outcome != "ok"}
    assert failed == {}, "\n\n".join(outcomes[step] for step in failed)


def test_the_module_loads_with_only_what_slicer_bundles_and_names_what_is_missing(harness_report, tag):
    """§1: nothing torch, monai, safetensors or matplotlib at load; the install can be offered."""
    report = harness_report(tag)
    assert report["python"].startswith("3.12.")
    assert not any(report["importable"].values()), "the harness venv holds more than Slicer bundles"
    assert_steps_ok(report, "slicer_layer", "load", "missing_dependencies")
    assert sorted(report["missing"]) == NOT_BUNDLED
    assert report["loaded_not_bundled"] == []
    layer = SLICER_REFERENCE / tag / "Base" / "Python" / "slicer"
    assert all(path.startswith(str(layer)) for path in report["slicer_files"].values())


def test_module_and_logic_build_on_slicers_base_classes(harness_report, tag):
    """§3: ``LungLiverSegLogic()`` through Slicer's ``ScriptedLoadableModuleLogic.__init__``."""
    report = harness_report(tag)
    assert_steps_ok(report, "module", "logic")
    assert report["title"] == "LungLiverSeg"
    assert report["logic_parameter_node"] == "LungLiverSegParameterNode"


def test_opening_the_panel_connects_every_binding(harness_report, tag):
    """§4: setup() and enter() with the real .ui; ``connectGui`` succeeds, nothing is enabled that
    has no input, and the epochs spin box keeps a usable range."""
    report = harness_report(tag)
    assert_steps_ok(report, "widget_setup", "widget_enter", "panel")
    panel = report["panel"]
    assert panel["connected"]
    assert panel["buttons"] == {"segmentButton": False, "exportButton": False, "trainButton": False}
    assert panel["epochs_range"][0] == 0 and panel["epochs_range"][1] < 2**31 - 1


def test_export_needs_a_dataset_folder_that_was_chosen(harness_report, tag):
    """§4: a ``pathlib.Path`` field defaults to ``Path('.')``, which is truthy; Export must not
    write into Slicer's working directory because of it."""
    panel = harness_report(tag)["panel"]
    assert panel["export_enabled"] == {"without_folder": False, "with_folder": True}


def test_export_clicked_returns_at_once_and_the_poll_timer_shows_the_result(harness_report, tag):
    """§15: the export's files and metrics (seconds on a full CT) are written off the GUI thread;
    the click only starts it, and the poll timer delivers the result on the GUI thread."""
    report = harness_report(tag)
    assert_steps_ok(report, "export", "export_click")
    click = report["panel"]["export_click"]
    assert click["started"] == {
        "status": "Exporting clicked...",
        "export_enabled": False,
        "poll_timer_active": True,
        "exporting": True,
    }
    assert click["finished"]["status"].startswith("Exported case clicked to ")
    assert click["finished"]["export_enabled"] and click["finished"]["written"]


def test_opening_the_panel_loads_no_torch_into_slicers_process(harness_report, tag):
    """§14: with torch installed (a stand-in that records its importers), setup() and enter()
    import none of it: no CUDA context, and a later torch upgrade is not blocked on Windows."""
    report = harness_report(tag, "--torch-present")
    assert_steps_ok(report, "load", "widget_setup", "widget_enter")
    assert report["torch_imports"] == []


def test_the_model_and_preset_combo_boxes_sync_by_hand(harness_report, tag):
    """§4/§7: the combo boxes that list what is installed (no ``Choice`` can) have no GUI
    connector; the widget keeps them and the parameter node (``name@version``) in step."""
    report = harness_report(tag)
    assert_steps_ok(report, "widget_enter", "hand_sync")
    sync = report["panel"]["hand_sync"]
    assert sync.pop("models") >= 2, "the bundled models are listed before the dependencies are installed"
    assert sync == {"model_picked": True, "model_shown": True, "config_typed": True, "config_shown": True}


def test_tearing_the_module_down_stops_its_poll_timer(harness_report, tag):
    """Review §15: a module reload left the old widget's timer calling the old callbacks."""
    report = harness_report(tag)
    assert report["steps"]["teardown"] == "ok", report["steps"]["teardown"]
    assert report["teardown"] == {"poll_timer_active": False}


def test_the_modules_self_test_without_a_model_ends_cleanly_in_reload_and_test(harness_report, tag):
    """Review §15: ``skipTest`` inside ``runTest`` shows as "Test failed" in Reload and Test."""
    report = harness_report(tag)
    assert report["steps"]["self_test"] == "ok", report["steps"]["self_test"]
