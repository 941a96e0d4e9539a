"""The live training curve of the page: the loss and the validation Dice per epoch, kept from the
child's progress lines and drawn as a small SVG (``svg_plot``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from LungLiverSegLib.slicer_module.process import ProgressUpdate
from LungLiverSegLib.svg_plot import Series, line_chart

LOSS_COLOUR, DICE_COLOUR = "#ef8a62", "#67a9cf"


@dataclass
class TrainingCurve:
    """Per epoch: the last loss reported in it, and its validation's mean Dice where it had one."""

    loss: dict[int, float] = field(default_factory=dict)
    dice: dict[int, float] = field(default_factory=dict)

    def add(self, update: ProgressUpdate) -> None:
        if update.epoch is None:
            return
        if update.loss is not None:
            self.loss[update.epoch] = update.loss
        if update.validation_dice is not None:
            self.dice[update.epoch] = update.validation_dice

    def svg(self) -> str:
        """Loss (scaled to its own maximum) and Dice (0..1) against the epoch, with a legend."""
        epochs = sorted({*self.loss, *self.dice})
        loss = Series("loss", LOSS_COLOUR, self.loss)
        dice = Series("validation Dice", DICE_COLOUR, self.dice, top=1.0)
        return line_chart([loss, dice], f"epoch {epochs[-1]}") if epochs else ""
