"""Pictures of what a model gets wrong: a confusion matrix and a grid of images with their labels.

Drawn on matplotlib ``Figure`` objects (Agg, no pyplot), from numpy arrays: the training callbacks
(pyramid_lab.training) save them in the run folder and send them to TensorBoard; the report saves
its figures through :func:`save_png`. Below both, so that training never imports the report; no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pyramid_lab.runs.atomic import atomic_path

# Above this many classes the counts no longer fit in the cells.
_ANNOTATE_UP_TO = 20


def confusion_figure(matrix: np.ndarray, classes: Sequence[str], title: str = "confusion matrix") -> Figure:
    """A confusion matrix, coloured by the share of each true class, with the counts written in.

    Args:
        matrix: int ``[C, C]``, rows the true class, columns the predicted class.
        classes: the ``C`` class names.
        title: the figure's title.
    """
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = 2.5 + 0.45 * len(classes)
    figure = Figure(figsize=(size + 1.0, size), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=ax, label="share of the true class")
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right", fontsize="small")
    ax.set_yticks(ticks, classes, fontsize="small")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(matrix) / max(int(matrix.sum()), 1)
    ax.set_title(f"{title} (accuracy {100 * accuracy:.2f}%, {int(matrix.sum()):,} images)")
    if len(classes) <= _ANNOTATE_UP_TO:
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                colour = "white" if shares[i, j] > 0.5 else "black"
                ax.text(
                    j,
                    i,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize="x-small",
                    color=colour,
                )
    return figure


def image_grid_figure(images: np.ndarray, titles: Sequence[str], columns: int = 8, title: str = "") -> Figure:
    """Images in a grid, each with its caption (e.g. "true: cat / predicted: dog 0.97").

    Args:
        images: uint8 ``[K, H, W, 3]``.
        titles: ``K`` captions.
        columns: images per grid row.
        title: the figure's title.
    """
    count = max(len(images), 1)
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(1.6 * columns, 1.75 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, caption in zip(axes, images, titles):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(caption, fontsize=7)
    if not len(images):
        axes[0].text(0.5, 0.5, "none", ha="center", va="center", transform=axes[0].transAxes)
    if title:
        figure.suptitle(title, fontsize="medium")
    return figure


def figure_to_array(figure: Figure, dpi: int = 80) -> np.ndarray:
    """The figure rendered as uint8 ``[H, W, 3]`` (for TensorBoard's add_image, dataformats HWC)."""
    figure.set_dpi(dpi)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(figure: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Save ``figure`` as a PNG at ``path``, atomically (a killed report never leaves half a file)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png")
    return Path(path)
