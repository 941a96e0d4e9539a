"""The browser page: trame-slicer's viewer and Segment Editor, plus the LungLiverSeg panel (open,
segment, export, train), on one MRML scene served by trame.

Only wiring lives here: every action is an ``AppSession`` method, and ``publish`` copies the
session's ``page`` into trame's state after each action and each poll of the running job. The
page's own controls carry ``data-testid`` attributes for the browser tests.
"""

from __future__ import annotations

import asyncio
from typing import Any

from trame.widgets import client, html
from trame.widgets.vuetify3 import (
    VAlert,
    VBtn,
    VCardText,
    VCardTitle,
    VCheckbox,
    VDivider,
    VFileInput,
    VList,
    VListItem,
    VProgressLinear,
    VSelect,
    VTable,
    VTextField,
)
from trame_server import Server
from trame_slicer import module as trame_slicer_module
from trame_slicer.app.logic.layout_button_logic import LayoutButtonLogic
from trame_slicer.app.logic.mpr_interaction_button_logic import MprInteractionButtonLogic
from trame_slicer.app.logic.segmentation import SegmentEditorLogic
from trame_slicer.app.ui import LayoutButton, MprInteractionButton, ViewerLayout
from trame_slicer.app.ui.control_button import ControlButton
from trame_slicer.app.ui.segmentation import SegmentEditorToolbarUI, SegmentEditorUI, SegmentEditorUndoRedoUI
from trame_slicer.core import SlicerApp
from trame_slicer.rca_view import register_rca_factories
from vtkmodules.vtkCommonCore import vtkObject

from LungLiverSegLib.browser.data_folder import FOLDER, dicom_series_choices, list_folder
from LungLiverSegLib.browser.session import AppSession
from LungLiverSegLib.browser.settings import Settings
from LungLiverSegLib.browser.worklist_page import WorklistPage
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.worklist.store import STRATEGIES

POLL_S = 0.2
DEVICES = ("auto", "cpu", "cuda")
EDIT_SETTLE_S = 0.3
PANEL, EDITOR = "panel", "editor"
BUSY = "!!lls_page.job"
"""The page's expression for "a job runs" (its controls are disabled then)."""
UPLOAD_JS = """
const files = $event.target.files;
let total = 0; for (const f of files) total += f.size;
if (total > {limit}) {{ trame.trigger('{refuse}', [total]); }}
else {{ lls_uploading = true;
  window.load_files_by_chunks(files, {{ trigger_name: '{chunk}' }})
    .finally(() => {{ lls_uploading = false; }}); }}
"""


def test_id(name: str) -> list[str]:
    """The attribute the browser tests find a control by (stable, unlike its place on the page)."""
    return [f'data-testid="{name}"']


class LungLiverSegApp:
    """The page and its server-side objects: trame-slicer's application, editor logic and views,
    and the session that does the work."""

    def __init__(self, server: Server, settings: Settings) -> None:
        self.server = server
        server.enable_module(trame_slicer_module)
        self.slicer_app = SlicerApp()
        vtkObject.GlobalWarningDisplayOff()  # VTK 9.6's deprecation notices on every view, for nobody
        register_rca_factories(self.slicer_app.view_manager, server)
        self.editor_logic = SegmentEditorLogic(server, self.slicer_app)
        self.layout_logic = LayoutButtonLogic(server, self.slicer_app)
        self.mpr_logic = MprInteractionButtonLogic(server, self.slicer_app)
        self.session = AppSession(self.slicer_app.scene, settings)
        self.session.on_volume = self._show_volume
        self.session.on_segmentation = self._show_segmentation
        self.worklist = WorklistPage(self.session)
        self._uploaded: list[dict[str, Any]] = []
        self._shown_model: str | None = None
        self._initial_state()
        server.trigger("lls_browse")(self.browse)  # by name: the tests send it paths no listing has
        self._build_ui()
        self.slicer_app.segmentation_editor.segmentation_modified.connect(self._segmentation_edited)
        self._refresh: asyncio.TimerHandle | None = None
        server.controller.on_server_ready.add(self._start_polling)

    @property
    def state(self) -> Any:
        return self.server.state

    # --- state -------------------------------------------------------------------------------

    def _initial_state(self) -> None:
        state = self.state
        state.trame__title = "LungLiverSeg"
        state.update(
            {
                "lls_listing": self._listing(""),
                "lls_series_folder": "",
                "lls_series_uid": None,
                "lls_dataset": "corrections",
                "lls_case": "case_001",
                "lls_preset": (self.session.page.presets or [""])[0],
                "lls_epochs": 2,
                "lls_fine_tune": False,
                "lls_uploading": False,
                "lls_tool": PANEL,
                "lls_device": self.session.settings.device,
                "lls_ranking": STRATEGIES[0],
                "lls_retrain_every": 4,
                "lls_skip_reason": "",
            }
        )
        self.publish()

    def publish(self) -> None:
        """Copy the session's page into the state (trame sends what changed)."""
        page = self.session.page.as_state()
        self.state.lls_page = page
        if page["model"] != self._shown_model:  # the server chose (a new model): not the user's pick
            self.state.lls_model = self._shown_model = page["model"]
        self.state.lls_geometry = self._geometry()

    def _geometry(self) -> str:
        node = self.session.volume_node
        if node is None:
            return ""
        dims = node.GetImageData().GetDimensions()
        spacing = node.GetSpacing()
        return f"{' x '.join(map(str, dims))} voxels of {' x '.join(f'{s:.2f}' for s in spacing)} mm"

    def _listing(self, relative: str) -> dict[str, Any]:
        try:
            return list_folder(self.session.settings.data, relative).as_state()
        except (LungLiverSegError, OSError) as error:
            self.session.say(str(error), kind="error")
            return list_folder(self.session.settings.data).as_state()

    # --- actions (page events) ----------------------------------------------------------------

    def act(self, action: Any, *args: Any) -> None:
        """Run a session action and show its outcome; nothing a page sends reaches it unchecked."""
        action(*args)
        self.publish()

    def browse(self, relative: str, kind: str) -> None:
        if kind == FOLDER:
            self.state.lls_listing = self._listing(relative)
            self.state.lls_series_folder = ""
            return
        self.act(self.session.open_data_file, relative)

    def list_series(self) -> None:
        folder = self.state.lls_listing["path"]
        try:
            self.session.page.series = dicom_series_choices(self.session.settings.data, folder)
        except LungLiverSegError as error:
            self.session.say(str(error), kind="error")
        self.state.lls_series_folder = folder
        series = self.session.page.series
        self.state.lls_series_uid = series[0]["uid"] if series else None
        self.publish()

    def open_series(self) -> None:
        self.act(self.session.open_data_file, self.state.lls_series_folder, self.state.lls_series_uid)

    async def upload_chunk(self, files: list[dict[str, Any]]) -> None:
        """trame-slicer's chunked upload: files arrive in groups; an empty group ends the upload."""
        if files:
            self._uploaded.extend(files)
            return
        uploaded, self._uploaded = self._uploaded, []
        with self.state:
            self.act(self.session.open_upload, uploaded)

    def refuse_upload(self, total: int) -> None:
        self.act(self.session.open_upload_refused, total)

    async def segment(self, model: str, device: str) -> None:
        """The page sends its choices with the click (a trigger can overtake a state update). The
        page shows the job before its input is written (seconds for a large CT)."""
        self.session.page.model = model
        self.session.device = device if device in DEVICES else self.session.settings.device
        with self.state:
            self.session.page.job, self.session.page.progress_text = "segment", "Writing the input"
            self.publish()
        await asyncio.sleep(0.05)
        self.session.page.job = ""
        self.act(self.session.segment, self.slicer_app.segmentation_editor.active_segmentation_node)

    def export(self, dataset: str, case_id: str) -> None:
        node = self.slicer_app.segmentation_editor.active_segmentation_node
        self.act(self.session.export, dataset, case_id, node)

    def train(self, dataset: str, preset: str, epochs: str | int | None, fine_tune: bool) -> None:
        text = str(epochs if epochs is not None else "").strip()
        if text and not text.isdigit():
            self.session.say(f"epochs must be a whole number, not {text!r}", kind="error")
        else:
            self.session.train(dataset, preset, epochs=int(text) if text else None, fine_tune=bool(fine_tune))
        self.publish()

    def cancel(self) -> None:
        self.act(self.session.cancel)

    def open_worklist(
        self, folder: str, dataset: str, ranking: str, retrain_every: str | int, model: str
    ) -> None:
        self.session.page.model = model
        text = str(retrain_every).strip()
        every = int(text) if text.isdigit() and int(text) > 0 else 4
        self.act(self.worklist.open, folder or "", dataset, ranking, every)

    def next_case(self) -> None:
        self.act(self.worklist.next_case)

    def approve_case(self) -> None:
        self.act(self.worklist.approve)

    def skip_case(self, reason: str) -> None:
        self.act(self.worklist.skip, str(reason or ""))

    # --- scene to views -----------------------------------------------------------------------

    def _show_volume(self, volume_node: Any) -> None:
        self.slicer_app.display_manager.show_volume(volume_node, do_reset_views=True)
        self.editor_logic.on_volume_changed(volume_node)
        self.layout.typed_state.data.is_volume_loaded = True

    def _show_segmentation(self, segmentation_node: Any, volume_node: Any) -> None:
        """The model's segments in the editor, and as surfaces in the 3D view."""
        editor = self.slicer_app.segmentation_editor
        editor.set_active_segmentation(segmentation_node, volume_node)
        editor.set_surface_representation_enabled(True)
        if self._refresh is not None:  # the signals of filling the node: the session counted it already
            self._refresh.cancel()
            self._refresh = None

    def _segmentation_edited(self, *_: Any) -> None:
        """A paint, erase or undo is changing the segments: once it settles (a stroke modifies the
        node several times), the table shows the new voxel counts."""
        if self._refresh is None:
            self._refresh = asyncio.get_event_loop().call_later(EDIT_SETTLE_S, self._count_segments)

    def _count_segments(self) -> None:
        self._refresh = None
        self.session.segmentation_node = self.slicer_app.segmentation_editor.active_segmentation_node
        self.session.page.segments = self.session.segment_summary()
        with self.state:
            self.publish()

    def _page_opened(self) -> None:
        """A page (re)opened: the views stream only what is rendered next, so render them now (a
        reloaded page would stay black until the next change otherwise)."""
        for view in self.slicer_app.view_manager.get_views():
            view.schedule_render()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            if self.session.poll() or self.state.lls_page["job"] != self.session.page.job:
                with self.state:
                    self.publish()

    def _start_polling(self, **_: Any) -> None:
        asyncio.get_event_loop().create_task(self._poll())

    # --- layout -------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        with ViewerLayout(self.server, title="LungLiverSeg", is_drawer_visible=True) as self.layout:
            client.ClientTriggers(mounted=self._page_opened)
            self.layout.typed_state.data.active_tool = PANEL
            with self.layout.appbar:
                self._upload_button()
            with self.layout.drawer:
                with html.Div(v_if=f"lls_tool === '{PANEL}'"):
                    self._panel()
                self.editor_ui = SegmentEditorUI(v_if=f"lls_tool === '{EDITOR}'")
            with self.layout.toolbar:
                self._tool_button("LungLiverSeg", "mdi-lungs", PANEL)
                self._tool_button("Segment Editor", "mdi-brush", EDITOR)
                layout_button = LayoutButton(classes="mt-1")
                mpr_button = MprInteractionButton(classes="mt-1")
                SegmentEditorToolbarUI(editor_ui=self.editor_ui)
            with self.layout.undo_redo:
                SegmentEditorUndoRedoUI(editor_ui=self.editor_ui)
            with self.layout.content:
                self.layout_logic.layout_manager.initialize_layout_grid(self.layout)
        self.editor_logic.set_ui(self.editor_ui)
        self.layout_logic.set_ui(layout_button)
        self.mpr_logic.set_ui(mpr_button)

    @staticmethod
    def _tool_button(name: str, icon: str, tool: str) -> None:
        ControlButton(name=name, icon=icon, click=f"lls_tool = '{tool}'", raw_attrs=test_id(f"tool-{tool}"))

    def _upload_button(self) -> None:
        limit = self.session.settings.max_upload_mb * 1e6
        chunk = self.server.trigger_name(self.upload_chunk)
        refuse = self.server.trigger_name(self.refuse_upload)
        with html.Div(raw_attrs=test_id("upload"), style="width: 48px"):
            VFileInput(
                v_if="!lls_uploading",
                change=UPLOAD_JS.format(limit=limit, refuse=refuse, chunk=chunk),
                prepend_icon="mdi-file-upload",
                multiple=True,
                hide_input=True,
            )
            html.Span("...", v_else=True)

    def _panel(self) -> None:
        with html.Div():  # not a VCard: its overflow would stop the status from sticking
            self._status()
            self._files_section()
            VDivider()
            self._segment_section()
            VDivider()
            self._export_section()
            VDivider()
            self._train_section()
            VDivider()
            self._worklist_section()

    def _status(self) -> None:
        """The last outcome and the running job, kept in sight at the top of the panel."""
        with html.Div(style="position: sticky; top: 0; z-index: 2; background: rgb(var(--v-theme-surface));"):
            VAlert(
                v_if="lls_page.message",
                text=("lls_page.message",),
                type=("lls_page.message_kind",),
                density="compact",
                classes="ma-2",
                raw_attrs=test_id("message"),
            )
            with html.Div(v_if=(BUSY,), classes="mx-2 mb-2"):
                VProgressLinear(
                    model_value=("lls_page.progress * 100",), height=6, raw_attrs=test_id("progress-bar")
                )
                html.Span(
                    "{{ lls_page.progress_text }}", classes="text-caption", raw_attrs=test_id("progress")
                )
                VBtn("Cancel", click=self.cancel, size="small", classes="ml-2", raw_attrs=test_id("cancel"))

    def _files_section(self) -> None:
        VCardTitle("Open", classes="text-subtitle-1")
        with VCardText():
            html.Div("{{ lls_geometry }}", classes="text-caption", raw_attrs=test_id("geometry"))
            with VList(density="compact", max_height=180, raw_attrs=test_id("files")):
                VListItem(
                    v_if="lls_listing.parent !== null",
                    title="..",
                    click="trigger('lls_browse', [lls_listing.parent, 'folder'])",
                )
                VListItem(
                    v_for="entry in lls_listing.entries",
                    key="entry.path",
                    title=("entry.name",),
                    prepend_icon=("entry.kind === 'folder' ? 'mdi-folder' : 'mdi-file-image'",),
                    click="trigger('lls_browse', [entry.path, entry.kind])",
                    raw_attrs=[':data-testid="`file-${entry.name}`"'],
                )
            VBtn(
                "Open this folder as DICOM",
                v_if="lls_listing.has_dicom",
                click=self.list_series,
                size="small",
                raw_attrs=test_id("list-series"),
            )
            with html.Div(v_if="lls_series_folder && lls_page.series.length"):
                VSelect(
                    v_model="lls_series_uid",
                    items=("lls_page.series",),
                    item_title="title",
                    item_value="uid",
                    label="Series",
                    density="compact",
                    raw_attrs=test_id("series"),
                )
                VBtn("Open series", click=self.open_series, size="small", raw_attrs=test_id("open-series"))

    def _segment_section(self) -> None:
        VCardTitle("Segment", classes="text-subtitle-1")
        with VCardText():
            VSelect(
                v_model="lls_model",
                items=("lls_page.models",),
                item_title="title",
                item_value="value",
                label="Model",
                density="compact",
                disabled=(BUSY,),
                raw_attrs=test_id("model"),
            )
            html.Div(
                "{{ (lls_page.models.find(m => m.value === lls_model) || {}).details }}",
                classes="text-caption",
                style="white-space: pre-line",
                raw_attrs=test_id("model-details"),
            )
            VSelect(
                v_model="lls_device",
                items=(list(DEVICES),),
                label="Device",
                density="compact",
                disabled=(BUSY,),
                raw_attrs=test_id("device"),
            )
            VBtn(
                "Segment",
                click=(self.segment, "[lls_model, lls_device]"),
                disabled=(BUSY,),
                color="primary",
                raw_attrs=test_id("segment"),
            )
            with (
                VTable(density="compact", v_if="lls_page.segments.length", raw_attrs=test_id("segments")),
                html.Tbody(),
                html.Tr(v_for="row in lls_page.segments", key="row.name"),
            ):
                html.Td("{{ row.name }}")
                html.Td("{{ row.voxels }}", raw_attrs=[':data-testid="`voxels-${row.name}`"'])
                html.Td("{{ row.size.toFixed(1) }} {{ row.unit }}")

    def _export_section(self) -> None:
        VCardTitle("Export approved labels", classes="text-subtitle-1")
        with VCardText():
            VTextField(
                v_model="lls_dataset", label="Dataset", density="compact", raw_attrs=test_id("dataset")
            )
            VTextField(v_model="lls_case", label="Case ID", density="compact", raw_attrs=test_id("case"))
            VBtn(
                "Export",
                click=(self.export, "[lls_dataset, lls_case]"),
                disabled=(BUSY,),
                raw_attrs=test_id("export"),
            )
            with (
                VTable(density="compact", v_if="lls_page.correction.length", raw_attrs=test_id("correction")),
                html.Tbody(),
                html.Tr(v_for="row in lls_page.correction", key="row.segment"),
            ):
                html.Td("{{ row.segment }}")
                html.Td("Dice {{ row.dice.toFixed(3) }}")
                html.Td("{{ row.changed_ml.toFixed(1) }} mL changed")

    def _train_section(self) -> None:
        VCardTitle("Train", classes="text-subtitle-1")
        with VCardText():
            VSelect(
                v_model="lls_preset",
                items=("lls_page.presets",),
                label="Preset",
                density="compact",
                raw_attrs=test_id("preset"),
            )
            VTextField(
                v_model="lls_epochs",
                label="Epochs",
                type="number",
                density="compact",
                raw_attrs=test_id("epochs"),
            )
            VCheckbox(v_model="lls_fine_tune", label="Fine-tune the chosen model", density="compact")
            VBtn(
                "Train",
                click=(self.train, "[lls_dataset, lls_preset, lls_epochs, lls_fine_tune]"),
                disabled=(BUSY,),
                raw_attrs=test_id("train"),
            )
            html.Div(v_html="lls_page.curve_svg", classes="mt-2", raw_attrs=test_id("curve"))

    def _worklist_section(self) -> None:
        VCardTitle("Worklist", classes="text-subtitle-1")
        with VCardText():
            html.Div(
                "Folder: {{ lls_listing.path === '.' ? 'the data folder' : lls_listing.path }}",
                classes="text-caption",
            )
            VSelect(v_model="lls_ranking", items=(list(STRATEGIES),), label="Ranking", density="compact")
            VTextField(
                v_model="lls_retrain_every", label="Retrain after approvals", type="number", density="compact"
            )
            VBtn(
                "Open worklist",
                click=(
                    self.open_worklist,
                    "[lls_listing.path, lls_dataset, lls_ranking, lls_retrain_every, lls_model]",
                ),
                disabled=(BUSY,),
                raw_attrs=test_id("open-worklist"),
            )
            with (
                VTable(density="compact", v_if="lls_page.worklist.length", raw_attrs=test_id("worklist")),
                html.Tbody(),
                html.Tr(
                    v_for="row in lls_page.worklist",
                    key="row.case",
                    raw_attrs=[':data-testid="`case-${row.case}`"'],
                    style=("row.case === lls_page.case ? 'font-weight: bold' : ''",),
                ),
            ):
                html.Td("{{ row.case }}")
                html.Td("{{ row.state }}", raw_attrs=[':data-testid="`state-${row.case}`"'])
                html.Td("{{ row.unsure === null ? '' : row.unsure.toFixed(3) }}")
                html.Td("{{ row.changed_ml === null ? '' : row.changed_ml.toFixed(1) + ' mL' }}")
                html.Td("{{ row.dice === null ? row.why : 'Dice ' + row.dice.toFixed(3) }}")
            VBtn("Next case", click=self.next_case, disabled=(BUSY,), raw_attrs=test_id("next-case"))
            VBtn(
                "Approve",
                click=self.approve_case,
                disabled=(f"{BUSY} || !lls_page.case",),
                color="primary",
                classes="ml-2",
                raw_attrs=test_id("approve-case"),
            )
            VTextField(
                v_model="lls_skip_reason",
                label="Why skip",
                density="compact",
                raw_attrs=test_id("skip-reason"),
            )
            VBtn(
                "Skip",
                click=(self.skip_case, "[lls_skip_reason]"),
                disabled=(f"{BUSY} || !lls_page.case",),
                raw_attrs=test_id("skip-case"),
            )
            html.Div(v_html="lls_page.effort_svg", classes="mt-2", raw_attrs=test_id("effort"))
            html.Div("{{ lls_page.advice }}", classes="text-caption", raw_attrs=test_id("advice"))
