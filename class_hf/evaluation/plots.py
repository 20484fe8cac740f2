"""PNG plots for benchmarks: training-sample ratio per epoch and metric/loss curves, one line per arm.

Figures are drawn on matplotlib's Agg canvas directly (``matplotlib.figure.Figure``), without ``pyplot``: no GUI
backend, no global figure state, and the process's matplotlib backend is left alone.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

logger = logging.getLogger(__name__)

__all__ = ["plot_curves", "plot_sample_ratio"]


def _new_axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, object]:
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig: Figure, path: str | PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120)
    logger.info("Wrote %s.", path)
    return path


def _check_arms(data: Mapping, name: str) -> None:
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"`{name}` must be a non-empty dict mapping each arm's name to its values.")
    for arm, values in data.items():
        if len(values) == 0:
            raise ValueError(f"`{name}[{arm!r}]` is empty: give at least one value per arm or leave the arm out.")


def _mark_boundaries(ax, boundaries: Sequence[tuple[float, str]]) -> None:
    """Dotted vertical lines at ``x`` with their label at the top of the axes (e.g. curriculum stage switches)."""
    for x, label in boundaries:
        ax.axvline(float(x), color="grey", linestyle=":", linewidth=1)
        ax.annotate(
            label, (float(x), 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3), textcoords="offset points",
            fontsize=7, color="dimgrey", va="top",
        )  # fmt: skip


def sample_ratio_figure(
    epochs_to_fraction: Mapping[str, Sequence[float]],
    *,
    title: str = "Training samples per epoch",
    xlabel: str = "epoch",
    ylabel: str = "share of the training set",
    planned: Sequence[str] = (),
) -> Figure:
    """The figure drawn by :func:`plot_sample_ratio` (epoch ``e`` is ``values[e - 1]``)."""
    _check_arms(epochs_to_fraction, "epochs_to_fraction")
    for arm, fractions in epochs_to_fraction.items():
        for epoch, fraction in enumerate(fractions, start=1):
            if not (isinstance(fraction, numbers.Real) and 0.0 <= fraction <= 1.0):
                raise ValueError(
                    f"`epochs_to_fraction[{arm!r}]` has {fraction!r} at epoch {epoch}; fractions must lie in [0, 1]."
                )
    unknown = sorted(set(planned) - set(epochs_to_fraction))
    if unknown:
        raise ValueError(f"`planned` names arms {unknown} that are not in `epochs_to_fraction`.")
    fig, ax = _new_axes(title, xlabel, ylabel)
    for arm, fractions in epochs_to_fraction.items():
        epochs = list(range(1, len(fractions) + 1))
        style = {"linestyle": "--", "marker": None} if arm in planned else {"marker": "o", "markersize": 4}
        label = f"{arm} (planned, not measured)" if arm in planned else str(arm)
        ax.plot(epochs, list(fractions), drawstyle="steps-mid", label=label, **style)
    ax.set_ylim(0.0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_sample_ratio(
    epochs_to_fraction: Mapping[str, Sequence[float]],
    path: str | PathLike,
    *,
    title: str = "Training samples per epoch",
    xlabel: str = "epoch",
    ylabel: str = "share of the training set",
    planned: Sequence[str] = (),
) -> Path:
    """Plot the share of the training set each arm uses per epoch (as the CLASS paper's Figures 3-4) to a PNG.

    Args:
        epochs_to_fraction: arm name -> fraction of the training set seen in epochs 1, 2, ... (values in [0, 1]);
            e.g. ``{"CLASS (root)": [0.33, 0.58, 0.82, 1.0], "random sampling": [1.0, 1.0, 1.0, 1.0]}``.
        path: PNG file to write (parent folders are created).
        title: figure title.
        xlabel: x-axis label.
        ylabel: y-axis label.
        planned: arms whose values are a plan, not a measurement (e.g. the baseline's "every pair every epoch"):
            drawn dashed and labelled "(planned, not measured)".

    Returns:
        The path written.

    Raises:
        ValueError: no arms, an empty arm, a fraction outside [0, 1], or a planned arm that is not an arm.
    """
    figure = sample_ratio_figure(epochs_to_fraction, title=title, xlabel=xlabel, ylabel=ylabel, planned=planned)
    return _save(figure, path)


def curves_figure(
    history: Mapping[str, Sequence[tuple[float, float]]],
    xlabel: str,
    ylabel: str,
    title: str,
    *,
    boundaries: Sequence[tuple[float, str]] = (),
    integer_x: bool = False,
) -> Figure:
    """The figure drawn by :func:`plot_curves`."""
    _check_arms(history, "history")
    fig, ax = _new_axes(title, xlabel, ylabel)
    for arm, points in history.items():
        try:
            xs, ys = zip(*((float(x), float(y)) for x, y in points), strict=True)
        except (TypeError, ValueError) as e:
            raise ValueError(f"`history[{arm!r}]` must be a list of (x, y) number pairs.") from e
        bad = sum(1 for x, y in zip(xs, ys, strict=True) if not (math.isfinite(x) and math.isfinite(y)))
        if bad:
            # Plotted as a gap by matplotlib; said out loud so that a diverged run is not hidden.
            logger.warning(
                "`history[%r]` has %d non-finite point(s) of %d; they are left out of the plot.", arm, bad, len(xs)
            )
        ax.plot(xs, ys, marker="o", markersize=3, label=str(arm))
    if integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _mark_boundaries(ax, boundaries)
    ax.legend()
    return fig


def plot_curves(
    history: Mapping[str, Sequence[tuple[float, float]]],
    path: str | PathLike,
    xlabel: str,
    ylabel: str,
    title: str,
    *,
    boundaries: Sequence[tuple[float, str]] = (),
    integer_x: bool = False,
) -> Path:
    """Plot one curve per arm to a PNG, e.g. validation MRR against wall-clock seconds, or loss against steps.

    Args:
        history: arm name -> ``[(x, y), ...]`` in drawing order; e.g. ``{"CLASS": [(12.0, 0.41), (25.3, 0.52)],
            "baseline": [...]}``. Non-finite points are left out with a warning.
        path: PNG file to write (parent folders are created).
        xlabel: x-axis label (say the unit, e.g. "wall-clock (s)").
        ylabel: y-axis label.
        title: figure title.
        boundaries: ``[(x, label), ...]`` drawn as dotted vertical lines, e.g. the steps or epochs where a curriculum
            stage begins (``[(6, "stage 2"), (12, "stage 3")]``).
        integer_x: whole-number ticks on the x axis (epochs).

    Returns:
        The path written.

    Raises:
        ValueError: no arms, an empty arm, or points that are not (x, y) number pairs.
    """
    figure = curves_figure(history, xlabel, ylabel, title, boundaries=boundaries, integer_x=integer_x)
    return _save(figure, path)
