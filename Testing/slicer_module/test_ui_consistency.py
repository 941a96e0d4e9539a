"""The module's .ui and LungLiverSeg.py agree: names the code reaches exist, bindings match fields.

Slicer itself cannot run here, so a typo in a widget name or a parameter binding would only show
when a user opens the module; these checks read both files instead, and each binding is made by
Slicer's own GUI connectors in the Slicer-compatibility harness (``slicer_harness/``).
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ElementTree

import pytest
from factories import REPO_ROOT
from PIL import Image as PILImage
from slicer_module.slicer_harness.harness import SLICER_TAGS

MODULE_DIR = REPO_ROOT / "LungLiverSeg"
MODULE_FILE = MODULE_DIR / "LungLiverSeg.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "LungLiverSeg.ui"
ICON_FILE = MODULE_DIR / "Resources" / "Icons" / "LungLiverSeg.png"


@pytest.fixture(scope="module")
def ui() -> ElementTree.Element:
    return ElementTree.parse(UI_FILE).getroot()


@pytest.fixture(scope="module")
def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"))


def widget_names(ui: ElementTree.Element) -> set[str]:
    return {widget.get("name") for widget in ui.iter("widget")}


def parameter_bindings(ui: ElementTree.Element) -> dict[str, str]:
    """SlicerParameterName -> the widget class bound to it."""
    bindings = {}
    for widget in ui.iter("widget"):
        for prop in widget.findall("property[@name='SlicerParameterName']"):
            bindings[prop.findtext("string")] = widget.get("class")
    return bindings


def parameter_fields(module_tree: ast.Module) -> dict[str, str]:
    """Annotated fields of the class decorated with @parameterNodeWrapper -> their type name."""
    (wrapper,) = [
        node
        for node in module_tree.body
        if isinstance(node, ast.ClassDef)
        and any(ast.unparse(decorator) == "parameterNodeWrapper" for decorator in node.decorator_list)
    ]
    return {
        statement.target.id: ast.unparse(statement.annotation)
        for statement in wrapper.body
        if isinstance(statement, ast.AnnAssign)
    }


def test_root_widget_is_a_qmrmlwidget(ui: ElementTree.Element):
    root = ui.find("widget")
    assert root.get("class") == "qMRMLWidget"
    assert root.get("name") == "LungLiverSeg"


def test_every_widget_the_code_reaches_exists_in_the_ui(ui: ElementTree.Element):
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text(encoding="utf-8")))
    assert used, "the module reaches no widget: the pattern is out of date"
    assert used - widget_names(ui) == set()


HAND_SYNCED = {"modelName": "modelSelector", "trainingConfig": "trainingConfigSelector"}
"""Fields whose combo box lists what is installed (user models, presets, a typed config path): no
``Choice`` can list them, so the widget syncs them by hand instead of through ``SlicerParameterName``."""


def test_parameter_bindings_are_the_fields_less_the_hand_synced_ones(ui, module_tree):
    """The hand-synced ones are checked in use by test_slicer_harness (``hand_sync``)."""
    assert set(parameter_bindings(ui)) == set(parameter_fields(module_tree)) - set(HAND_SYNCED)
    assert set(HAND_SYNCED.values()) <= widget_names(ui)


@pytest.mark.slicer
@pytest.mark.slow
@pytest.mark.parametrize("tag", SLICER_TAGS)
def test_every_binding_has_a_slicer_gui_connector(harness_report, tag: str):
    """§4, with Slicer's own ``createGuiConnector`` (``parameterNodeWrapper/guiConnectors.py`` at
    ``tag``) on a widget of the class the .ui declares and the parameter node's field type; a
    connector must not change the range the .ui gives a spin box."""
    bindings = harness_report(tag)["bindings"]
    assert bindings, "no binding was checked"
    failures = {name: entry["error"] for name, entry in bindings.items() if "error" in entry}
    assert failures == {}
    ranges = {name: (e["declared_range"], e["range"]) for name, e in bindings.items() if e["range"]}
    assert ranges and all(declared == after for declared, after in ranges.values()), ranges


def test_node_selectors_list_the_node_types_of_their_fields(ui, module_tree):
    """The field's node classes (``A | B | None`` lists A and B), as its GUI connector sets them."""
    fields = parameter_fields(module_tree)
    for widget in ui.iter("widget"):
        if widget.get("class") != "qMRMLNodeComboBox":
            continue
        field_name = widget.findtext("property[@name='SlicerParameterName']/string")
        node_types = [text.text for text in widget.findall("property[@name='nodeTypes']/stringlist/string")]
        assert node_types == [name for name in fields[field_name].split(" | ") if name != "None"]


def test_the_input_selector_offers_rgb_xrays(ui):
    """§15: Slicer loads an RGB PNG/JPEG as a vtkMRMLVectorVolumeNode; the selector shows exactly
    the listed classes (``showChildNodeTypes`` false keeps label maps and DWI out)."""
    [selector] = [widget for widget in ui.iter("widget") if widget.get("name") == "inputVolumeSelector"]
    node_types = [text.text for text in selector.findall("property[@name='nodeTypes']/stringlist/string")]
    assert "vtkMRMLVectorVolumeNode" in node_types
    assert selector.findtext("property[@name='showChildNodeTypes']/bool") == "false"


def test_node_selectors_get_the_scene(ui: ElementTree.Element):
    selectors = {w.get("name") for w in ui.iter("widget") if w.get("class") == "qMRMLNodeComboBox"}
    receivers = {
        connection.findtext("receiver")
        for connection in ui.iter("connection")
        if connection.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
    }
    assert selectors <= receivers


def test_custom_widgets_are_declared(ui: ElementTree.Element):
    declared = {custom.findtext("class") for custom in ui.iter("customwidget")}
    used = {widget.get("class") for widget in ui.iter("widget")}
    assert {name for name in used if not name.startswith("Q")} <= declared


def test_icon_is_a_128_pixel_png():
    with PILImage.open(ICON_FILE) as icon:
        assert (icon.format, icon.size) == ("PNG", (128, 128))


def test_module_names_its_data_licences():
    text = MODULE_FILE.read_text(encoding="utf-8")
    for licence in ("CC BY 3.0", "CC BY-SA 4.0", "TCIA", "National Library of Medicine", "LungLiverSeg"):
        assert licence in text
