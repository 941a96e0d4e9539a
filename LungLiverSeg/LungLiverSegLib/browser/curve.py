"""The live training curve of the page: the loss and the validation Dice per epoch, kept from the
child's progress lines and drawn as a small SVG (no plotting library in the server, nothing to
load in the page).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from LungLiverSegLib.slicer_module.process import ProgressUpdate

WIDTH, HEIGHT, MARGIN = 300, 120, 8
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
        if not epochs:
            return ""
        first, last = epochs[0], max(epochs[-1], epochs[0] + 1)
        top = max(self.loss.values(), default=1.0) or 1.0
        loss = _polyline(self.loss, first, last, top, LOSS_COLOUR)
        dice = _polyline(self.dice, first, last, 1.0, DICE_COLOUR)
        legend = (
            _text(MARGIN, LOSS_COLOUR, "loss")
            + _text(MARGIN + 40, DICE_COLOUR, "validation Dice")
            + _text(WIDTH - MARGIN, "#aaa", f"epoch {epochs[-1]}", anchor="end")
        )
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}">{loss}{dice}{legend}</svg>'
        )


def _polyline(values: dict[int, float], first: int, last: int, top: float, colour: str) -> str:
    if not values:
        return ""
    plot_height = HEIGHT - 3 * MARGIN

    def point(epoch: int, value: float) -> tuple[str, str]:
        x = MARGIN + (epoch - first) / (last - first) * (WIDTH - 2 * MARGIN)
        y = MARGIN + (1 - min(max(value / top, 0.0), 1.0)) * plot_height
        return f"{x:.1f}", f"{y:.1f}"

    points = [point(epoch, values[epoch]) for epoch in sorted(values)]
    line = " ".join(f"{x},{y}" for x, y in points)
    dots = "".join(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/>' for x, y in points)
    return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{line}"/>{dots}'


def _text(x: float, colour: str, text: str, anchor: str = "start") -> str:
    return (
        f'<text x="{x}" y="{HEIGHT - 2}" font-size="10" fill="{colour}" text-anchor="{anchor}">{text}</text>'
    )
