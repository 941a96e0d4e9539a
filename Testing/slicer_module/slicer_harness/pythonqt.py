"""Stand-ins for what PythonQt gives Slicer's Python: the ``qt`` and ``ctk`` modules, the
``slicer.q*`` widget classes, ``slicer.app`` and a scripted module's C++ ``parent``.

They hold state and emit signals, nothing more: the behaviour under test is Slicer's own Python
(``ScriptedLoadableModule.py``, ``parameterNodeWrapper``, ``util.py``) and the module's code. The
widget classes that a ``.ui`` may declare are written out (``UI_CLASSES``): a ``.ui`` with any other
class fails to load, so a new widget needs its stand-in here first. Other Qt/CTK class names that
Slicer's code only compares against (``type(widget) in (qt.QSlider, ...)``) are made on first use
as distinct, empty classes, and listed in ``generated_names`` for the report.
"""

# ruff: noqa: N802, N803, N807, N815  (Qt's and PythonQt's own names and signatures)
from __future__ import annotations

import inspect
import re
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path

QT_CLASS_NAME = re.compile(r"^(Q|ctk|qMRML|qSlicer)[A-Z]\w*$")
generated_names: list[str] = []


class BoundSignal:
    """``widget.clicked.connect(slot)``; a slot is called with as many arguments as it takes."""

    def __init__(self) -> None:
        self.slots: list = []

    def connect(self, slot) -> None:
        self.slots.append(slot)

    def disconnect(self, slot=None) -> None:
        if slot is None:
            self.slots.clear()
        else:
            self.slots.remove(slot)

    def emit(self, *args) -> None:
        for slot in list(self.slots):
            slot(*args[: accepted_arguments(slot, len(args))])


def accepted_arguments(slot, offered: int) -> int:
    """PythonQt drops the signal arguments that a Python slot does not take."""
    try:
        parameters = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return offered
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return offered
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return min(offered, len(positional))


class Signal:
    """A class-level signal declaration; each instance gets its own ``BoundSignal``."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        return instance.__dict__.setdefault(f"_signal_{self.name}", BoundSignal())


class QObject:
    destroyed = Signal()

    def __init__(self, parent=None) -> None:
        self.name = ""
        self._children: list[QObject] = []
        self._parent = parent
        self._properties: dict[str, object] = {}
        if parent is not None:
            parent._children.append(self)

    def children(self) -> list:
        return list(self._children)

    def parent(self):
        return self._parent

    def findChildren(self, cls=None) -> list:
        found = []
        for child in self._children:
            if cls is None or isinstance(child, cls):
                found.append(child)
            found.extend(child.findChildren(cls))
        return found

    def property(self, name: str):
        return self._properties.get(name)

    def setProperty(self, name: str, value) -> None:
        self._properties[name] = value

    def connect(self, signature: str, slot) -> None:
        """PythonQt's ``obj.connect("clicked(bool)", slot)``."""
        getattr(self, signature.partition("(")[0]).connect(slot)

    def disconnect(self, signature: str, slot=None) -> None:
        getattr(self, signature.partition("(")[0]).disconnect(slot)

    def isWidgetType(self) -> bool:
        return False


class QWidget(QObject):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.enabled = True
        self.visible = True
        self.toolTip = ""
        self._layout = None

    def isWidgetType(self) -> bool:
        return True

    def setLayout(self, layout) -> None:
        self._layout = layout
        layout._widget = self

    def layout(self):
        return self._layout

    def show(self) -> None:
        self.visible = True


class QLayout(QObject):
    def __init__(self, parent=None) -> None:
        super().__init__(None)
        self._widget = None
        if parent is not None:
            parent.setLayout(self)

    def addWidget(self, widget, *args) -> None:
        if self._widget is not None:
            widget._parent = self._widget
            self._widget._children.append(widget)


class QVBoxLayout(QLayout):
    pass


class QHBoxLayout(QLayout):
    pass


class QFormLayout(QLayout):
    def addRow(self, *widgets) -> None:
        for widget in widgets:
            if isinstance(widget, QWidget):
                self.addWidget(widget)


class QGridLayout(QLayout):
    pass


class QLabel(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.text = ""
        self.wordWrap = False


class QAbstractButton(QWidget):
    clicked = Signal()
    toggled = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.text = ""
        self.checkable = False
        self._checked = False

    @property
    def checked(self) -> bool:
        return self._checked

    @checked.setter
    def checked(self, value: bool) -> None:
        if bool(value) != self._checked:
            self._checked = bool(value)
            self.toggled.emit(self._checked)
            self._state_changed()

    def _state_changed(self) -> None:
        """Only a check box says ``stateChanged``."""

    def click(self) -> None:
        if self.enabled:
            if self.checkable:
                self.checked = not self.checked
            self.clicked.emit(self.checked)


class QPushButton(QAbstractButton):
    pass


class QCheckBox(QAbstractButton):
    stateChanged = Signal()

    def _state_changed(self) -> None:
        self.stateChanged.emit(2 if self._checked else 0)


class QProgressBar(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.value = 0


class NotifyingText:
    """A Qt string property whose change emits the widget's ``signal`` with the new value, as
    Qt does when a user types (or code sets) the text; "" until set."""

    def __init__(self, signal: str) -> None:
        self.signal = signal

    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = f"_{name}"

    def __get__(self, widget: object, owner: type | None = None) -> str:
        return getattr(widget, self.attribute, "")

    def __set__(self, widget: object, value: str) -> None:
        if value != self.__get__(widget):
            setattr(widget, self.attribute, value)
            getattr(widget, self.signal).emit(value)


class QLineEdit(QWidget):
    textChanged = Signal()
    text = NotifyingText("textChanged")


class QSpinBox(QWidget):
    valueChanged = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.minimum, self.maximum, self._value = 0, 99, 0
        self.specialValueText = ""
        self.singleStep = 1

    def setRange(self, minimum: int, maximum: int) -> None:
        self.minimum, self.maximum = minimum, maximum
        self.value = self._value

    def setMinimum(self, minimum: int) -> None:
        self.setRange(minimum, max(minimum, self.maximum))

    def setMaximum(self, maximum: int) -> None:
        self.setRange(min(self.minimum, maximum), maximum)

    @property
    def value(self) -> int:
        return self._value

    @value.setter
    def value(self, value: int) -> None:
        value = min(max(int(value), self.minimum), self.maximum)
        if value != self._value:
            self._value = value
            self.valueChanged.emit(value)


class QComboBox(QWidget):
    """Item data defaults to ``Qt.UserRole`` (256) in ``itemData``/``setItemData``/``findData``, as in Qt."""

    currentIndexChanged = Signal()
    currentTextChanged = Signal()
    editTextChanged = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._items: list[list] = []  # [text, {role: data}]
        self._index = -1
        self.editable = False
        self._edit_text = ""

    @property
    def count(self) -> int:
        return len(self._items)

    @property
    def currentIndex(self) -> int:
        return self._index

    @currentIndex.setter
    def currentIndex(self, index: int) -> None:
        index = index if 0 <= index < len(self._items) else -1
        if index != self._index:
            self._index = index
            self._edit_text = self.itemText(index)
            self.currentIndexChanged.emit(index)
            self.currentTextChanged.emit(self.currentText)

    @property
    def currentText(self) -> str:
        return self._edit_text if self.editable else self.itemText(self._index)

    def setEditText(self, text: str) -> None:
        """What a user types into an editable combo box."""
        self._edit_text = text
        self.editTextChanged.emit(text)
        self.currentTextChanged.emit(text)

    def setCurrentText(self, text: str) -> None:
        """Qt: an editable combo box shows ``text``; another selects the item of ``text``, if any."""
        if self.editable:
            self.currentIndex = self.findText(text)
            self.setEditText(text)
        elif self.findText(text) >= 0:
            self.currentIndex = self.findText(text)

    def addItem(self, text: str, userData=None) -> None:
        self._items.append([str(text), {} if userData is None else {Qt.UserRole: userData}])
        if self._index == -1:
            self.currentIndex = 0

    def addItems(self, texts) -> None:
        for text in texts:
            self.addItem(text)

    def clear(self) -> None:
        self._items.clear()
        self.currentIndex = -1

    def itemText(self, index: int) -> str:
        return self._items[index][0] if 0 <= index < len(self._items) else ""

    def setItemData(self, index: int, value, role: int = 256) -> None:
        self._items[index][1][role] = value

    def itemData(self, index: int, role: int = 256):
        return self._items[index][1].get(role) if 0 <= index < len(self._items) else None

    def findText(self, text: str) -> int:
        return next((i for i, (item, _) in enumerate(self._items) if item == text), -1)

    def findData(self, value, role: int = 256) -> int:
        return next((i for i, (_, data) in enumerate(self._items) if data.get(role) == value), -1)


class QTableWidgetItem:
    """A cell: its text (``item.text()``, a method in PythonQt as in Qt)."""

    def __init__(self, text: str = "") -> None:
        self._text = str(text)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        self._text = str(text)

    def setToolTip(self, text: str) -> None:
        self.toolTip = str(text)


class QTableWidget(QWidget):
    """Rows and columns of ``QTableWidgetItem`` cells, with header labels."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._rows, self._columns = 0, 0
        self._cells: dict[tuple[int, int], QTableWidgetItem] = {}
        self.header_labels: list[str] = []

    def rowCount(self) -> int:
        return self._rows

    def columnCount(self) -> int:
        return self._columns

    def setRowCount(self, rows: int) -> None:
        self._rows = rows
        self._cells = {(r, c): item for (r, c), item in self._cells.items() if r < rows}

    def setColumnCount(self, columns: int) -> None:
        self._columns = columns
        self._cells = {(r, c): item for (r, c), item in self._cells.items() if c < columns}

    def setHorizontalHeaderLabels(self, labels) -> None:
        self.header_labels = list(labels)

    def setItem(self, row: int, column: int, item: QTableWidgetItem) -> None:
        if 0 <= row < self._rows and 0 <= column < self._columns:
            self._cells[(row, column)] = item

    def item(self, row: int, column: int):
        return self._cells.get((row, column))

    def resizeColumnsToContents(self) -> None:
        pass


class QTimer(QObject):
    timeout = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.interval, self.active, self.singleShot = 0, False, False

    def setInterval(self, milliseconds: int) -> None:
        self.interval = milliseconds

    def start(self, *args) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False


class QSettings:
    """Empty settings: ``contains`` is False, so Slicer's defaults apply."""

    def __init__(self, *args) -> None:
        self._values: dict = {}

    def value(self, key: str, default=None):
        return self._values.get(key, default)

    def setValue(self, key: str, value) -> None:
        self._values[key] = value

    def contains(self, key: str) -> bool:
        return key in self._values


class QIcon:
    def __init__(self, path: str = "") -> None:
        self.path = path


class QFile:
    ReadOnly = 1

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.is_file()

    def open(self, mode: int) -> bool:
        return self.exists()

    def close(self) -> None:
        pass


class Qt:
    UserRole = 256
    ToolTipRole = 3
    DisplayRole = 0
    ShiftModifier = 0x02000000
    WaitCursor = 3


class ctkCollapsibleButton(QAbstractButton):  # noqa: N801  (CTK's class name)
    contentsCollapsed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.collapsed = False


class ctkPathLineEdit(QWidget):  # noqa: N801  (CTK's class name)
    currentPathChanged = Signal()
    Dirs, Files = 1, 2

    currentPath = NotifyingText("currentPathChanged")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.filters = 0


class qMRMLWidget(QWidget):  # noqa: N801  (Slicer's class name)
    mrmlSceneChanged = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene) -> None:
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qMRMLNodeComboBox(qMRMLWidget):  # noqa: N801  (Slicer's class name)
    """Lists the scene's nodes of ``nodeTypes``; a node of another class is not selectable."""

    currentNodeChanged = Signal()
    currentNodeIDChanged = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.nodeTypes: list[str] = []
        self.showChildNodeTypes = True
        self.noneEnabled = False
        self.addEnabled = self.removeEnabled = self.renameEnabled = True
        self.noneDisplay = ""
        self._node = None

    def currentNode(self):
        return self._node

    def currentNodeID(self) -> str:
        return self._node.GetID() if self._node is not None else ""

    def setCurrentNode(self, node) -> None:
        if node is not None and not any(node.IsA(name) for name in self.nodeTypes):
            return
        if node is not self._node:
            self._node = node
            self.currentNodeChanged.emit(node)
            self.currentNodeIDChanged.emit(self.currentNodeID())


UI_CLASSES = {
    cls.__name__: cls
    for cls in (
        QWidget,
        QLabel,
        QPushButton,
        QCheckBox,
        QProgressBar,
        QLineEdit,
        QSpinBox,
        QComboBox,
        QTableWidget,
        ctkCollapsibleButton,
        ctkPathLineEdit,
        qMRMLWidget,
        qMRMLNodeComboBox,
    )
}
LAYOUT_CLASSES = {cls.__name__: cls for cls in (QVBoxLayout, QHBoxLayout, QFormLayout, QGridLayout)}


class QUiLoader:
    """Builds the widget tree of a ``.ui`` file from the stand-in classes, sets the properties the
    ``.ui`` sets (``stdset="0"`` ones as dynamic properties, like Qt) and makes its connections."""

    def load(self, qfile: QFile) -> QWidget:
        root = ElementTree.parse(qfile.path).getroot()
        widgets: dict[str, QObject] = {}
        top = self._build(root.find("widget"), None, widgets)
        for connection in root.iter("connection"):
            sender = widgets[connection.findtext("sender")]
            receiver = widgets[connection.findtext("receiver")]
            slot = getattr(receiver, connection.findtext("slot").partition("(")[0])
            sender.connect(connection.findtext("signal"), slot)
        return top

    def _build(self, element, parent, widgets: dict) -> QWidget:
        class_name = element.get("class")
        if class_name not in UI_CLASSES:
            raise RuntimeError(f"the .ui declares {class_name}, which has no stand-in in pythonqt.py")
        widget = UI_CLASSES[class_name](parent)
        widget.name = element.get("name", "")
        widgets[widget.name] = widget
        for prop in element.findall("property"):
            self._set_property(widget, prop)
        self._build_children(element, widget, widgets)
        return widget

    def _build_children(self, element, widget, widgets: dict) -> None:
        for child in element:
            if child.tag == "widget":
                self._build(child, widget, widgets)
            elif child.tag in ("layout", "item"):
                if child.tag == "layout":
                    layout = LAYOUT_CLASSES[child.get("class")](None)
                    layout.name = child.get("name", "")
                    layout._parent = widget
                    widget._children.append(layout)
                    widget._layout = layout
                self._build_children(child, widget, widgets)

    @staticmethod
    def _set_property(widget, prop) -> None:
        name, value = prop.get("name"), property_value(prop)
        if prop.get("stdset") == "0":
            widget.setProperty(name, value)
        elif hasattr(widget, name):
            setattr(widget, name, value)
        else:
            widget._properties[name] = value


def property_value(prop):
    """The Python value of a ``<property>`` as PythonQt would give it."""
    (value,) = list(prop)
    if value.tag == "bool":
        return value.text == "true"
    if value.tag == "number":
        return int(value.text)
    if value.tag == "stringlist":
        return [item.text or "" for item in value.findall("string")]
    if value.tag in ("string", "cstring", "enum", "set"):
        return value.text or ""
    return value


class ModuleManager(QObject):
    moduleAboutToBeUnloaded = Signal()


class SlicerApplication(QObject):
    """``slicer.app``: what the base classes and the module ask of it."""

    def __init__(self, temporary_path: str) -> None:
        super().__init__()
        self.temporaryPath = temporary_path
        self._module_manager = ModuleManager()
        self.overrideCursors: list = []

    def translate(self, context: str, text: str) -> str:
        return text

    def processEvents(self) -> None:
        """No event loop here (``slicer.util.delayDisplay`` calls this for short messages)."""

    def setOverrideCursor(self, cursor) -> None:
        """A wait cursor (``slicer.util.tryWithErrorDisplay(waitCursor=True)``): nothing to show."""
        self.overrideCursors.append(cursor)

    def restoreOverrideCursor(self) -> None:
        self.overrideCursors.pop()

    def moduleManager(self) -> ModuleManager:
        return self._module_manager

    def layoutManager(self):
        """None, as in a Slicer without a main window (``--no-main-window``): no views to lay out."""
        return None


class ModuleParent(QObject):
    """The C++ ``qSlicerScriptedLoadableModule`` a ``ScriptedLoadableModule`` fills in."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.isEntered = False
        self.title = ""
        self.categories: list = []
        self.dependencies: list = []
        self.contributors: list = []
        self.helpText = self.acknowledgementText = ""
        self.icon = None


def stand_in_module(name: str, classes: dict) -> types.ModuleType:
    """A ``qt``/``ctk`` module: the written-out classes, and an empty distinct class for any other
    Qt-style class name that Slicer's code compares against."""
    module = types.ModuleType(name)
    module.__dict__.update(classes)

    def __getattr__(attribute: str):
        if not QT_CLASS_NAME.match(attribute):
            raise AttributeError(f"module {name!r} (stand-in) has no attribute {attribute!r}")
        generated = type(attribute, (QWidget,), {})
        setattr(module, attribute, generated)
        generated_names.append(f"{name}.{attribute}")
        return generated

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


def _named(prefix: str, classes: dict[str, type]) -> dict[str, type]:
    return {name: cls for name, cls in classes.items() if name.startswith(prefix)}


def qt_module() -> types.ModuleType:
    """The ``Q*`` widget and layout classes above, and the few others the code and the wrapper use."""
    others = (QObject, QTimer, QSettings, QIcon, QFile, QUiLoader, Qt, QTableWidgetItem)
    classes = {**_named("Q", UI_CLASSES), **LAYOUT_CLASSES, **{cls.__name__: cls for cls in others}}
    return stand_in_module("qt", classes)


def ctk_module() -> types.ModuleType:
    return stand_in_module("ctk", _named("ctk", UI_CLASSES))


def slicer_widget_classes() -> dict:
    """The ``slicer.q*`` classes (qMRMLWidgets kit) the .ui and the wrapper use."""
    return _named("qMRML", UI_CLASSES)
