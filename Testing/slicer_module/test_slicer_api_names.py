"""Every Slicer method the Slicer-side code calls exists in each supported Slicer (5.10 and 5.12).

The names come from Slicer's C++ headers at each tag (``declared-api-names*.txt`` in
../shared/slicer-reference) and from Slicer's own ``util.py``; slicer-core is a single 5.11 build,
so a method added later than the oldest supported Slicer (§2: ``Get/SetTerminology`` against 5.8)
passes every slicer-core test and fails only in the user's Slicer. Name level only: the lists do
not say which class declares a name.
"""

from __future__ import annotations

import ast
import re

import pytest
from factories import REPO_ROOT
from slicer_module.slicer_harness.harness import SLICER_REFERENCE, SLICER_TAGS

SLICER_SIDE = [
    REPO_ROOT / "LungLiverSeg" / "LungLiverSeg.py",
    *sorted((REPO_ROOT / "LungLiverSeg" / "LungLiverSegLib" / "slicer_module").glob("*.py")),
]

NOT_SLICER_METHODS = {
    # VTK's own methods (VTK is not in Slicer's repository, so not in the lists)
    "GetPointData",  # vtkDataSet
    "SetScalars",  # vtkDataSetAttributes
    "AddObserver",  # vtkObject (and the parameter node wrapper)
    "RemoveObserver",
}
"""CamelCase methods called on objects that are not Slicer's: each says whose it is."""

CAMEL_CASE = re.compile(r"^[A-Z]\w*$")


def declared(tag: str, lowercase: bool = False) -> set[str]:
    name = "declared-api-names-lowercase.txt" if lowercase else "declared-api-names.txt"
    path = SLICER_REFERENCE / tag / name
    if not path.is_file():
        pytest.skip(f"Slicer's declared API names ({tag}) not found at {path}")
    return set(path.read_text(encoding="utf-8").split())


def util_functions(tag: str) -> set[str]:
    path = SLICER_REFERENCE / tag / "Base" / "Python" / "slicer" / "util.py"
    if not path.is_file():
        pytest.skip(f"Slicer's util.py ({tag}) not found at {path}")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}


def imported_names(tree: ast.Module) -> set[str]:
    """Names bound by imports: ``events.TrainingDone(`` builds our class, it calls no method."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).partition(".")[0] for alias in node.names}
    return names


def method_calls() -> list[tuple[str, str, str]]:
    """(receiver, method, where) for every ``receiver.method(...)`` in the Slicer-side code."""
    calls = []
    for path in SLICER_SIDE:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = imported_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                receiver = ast.unparse(node.func.value)
                if receiver in modules - {"slicer"}:
                    continue
                calls.append((receiver, node.func.attr, f"{path.name}:{node.lineno}"))
    return calls


def test_the_scan_sees_the_mrml_calls():
    """Without this, an empty scan would pass the checks below."""
    methods = {method for _, method, _ in method_calls()}
    assert {"GetSegmentation", "SetTerminology", "ImportLabelmapToSegmentationNode"} <= methods


def undeclared(calls: list[tuple[str, str, str]], names: set[str]) -> list[str]:
    """``method (file:line)`` for each CamelCase method called that ``names`` lacks."""
    return sorted(
        {
            f"{method} ({where})"
            for _, method, where in calls
            if CAMEL_CASE.match(method) and method not in names | NOT_SLICER_METHODS
        }
    )


@pytest.mark.parametrize("tag", SLICER_TAGS)
def test_every_camel_case_method_is_declared_in_slicer(tag: str):
    assert undeclared(method_calls(), declared(tag)) == [], f"not declared in Slicer {tag}"


@pytest.mark.parametrize("tag", SLICER_TAGS)
def test_every_slicer_util_function_exists(tag: str):
    functions = util_functions(tag)
    called = {(method, where) for receiver, method, where in method_calls() if receiver == "slicer.util"}
    assert called, "no slicer.util call seen: the scan is out of date"
    assert sorted(f"{m} ({w})" for m, w in called if m not in functions) == []


@pytest.mark.parametrize("tag", SLICER_TAGS)
def test_slicer_widget_and_application_methods_are_declared(tag: str):
    """Lowercase methods on Slicer's Qt objects: the Segment Editor's widget, ``slicer.app``."""
    names = declared(tag, lowercase=True)
    slicer_objects = [
        (receiver, method, where)
        for receiver, method, where in method_calls()
        if receiver.startswith(("editor", "slicer.app", "slicer.modules")) and not CAMEL_CASE.match(method)
    ]
    assert {method for _, method, _ in slicer_objects} >= {"setSegmentationNode"}
    assert sorted(f"{m} ({w})" for _, m, w in slicer_objects if m not in names) == []


def test_a_method_that_came_later_than_the_oldest_slicer_is_caught():
    """The check can fail: a method that 5.12 declares and 5.10 does not is reported for 5.10."""
    oldest, newest = (declared(tag) for tag in SLICER_TAGS)
    later = sorted(name for name in newest - oldest if CAMEL_CASE.match(name))[0]
    calls = [("node", later, "LungLiverSeg.py:1"), ("node", "GetName", "LungLiverSeg.py:2")]
    assert undeclared(calls, oldest) == [f"{later} (LungLiverSeg.py:1)"]
    assert undeclared(calls, newest) == []
