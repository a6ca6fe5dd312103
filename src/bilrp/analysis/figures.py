"""Figures of the corpus analyses (matplotlib): POS heatmaps, share and change bars, errors and top interactions.

Positive relevance is red and negative relevance blue throughout, as in the paper's figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .multilingual import Change
    from .pos import PosInteractions
    from .quantiles import ModelComparison

__all__ = [
    "plot_pos_interactions",
    "plot_shares",
    "plot_changes",
    "plot_level_errors",
    "plot_quantile_interactions",
]

POSITIVE, NEGATIVE = "#c0392b", "#2e6fb5"


def _heatmap(axis, values: np.ndarray, rows: list[str], columns: list[str], cmap: str, limits, title: str):
    import matplotlib

    colormap = matplotlib.colormaps[cmap].with_extremes(bad="#eeeeee")
    image = axis.imshow(np.ma.masked_invalid(values), cmap=colormap, vmin=limits[0], vmax=limits[1], aspect="auto")
    axis.set_xticks(range(len(columns)), columns, rotation=90, fontsize=7)
    axis.set_yticks(range(len(rows)), rows, fontsize=7)
    axis.set_xlabel("text B")
    axis.set_ylabel("text A")
    axis.set_title(title, fontsize=9)
    axis.figure.colorbar(image, ax=axis, fraction=0.046, pad=0.02)


def plot_pos_interactions(interactions: PosInteractions, title: str = "", min_count: int = 20) -> Figure:
    """2 x 2 heatmaps over tag pairs (rows: tags of text A, columns: text B).

    Top row: summed positive (red) and negative (blue) relevance, both divided by the largest absolute total
    of either sign. Bottom row: mean relevance per occurrence, for tag pairs occurring at least ``min_count``
    times. Each panel's colour scale ends at its own largest magnitude (printed in its title), since negative
    relevance is often far smaller than positive. Grey cells never occur (or too rarely for a mean).
    """
    import matplotlib.pyplot as plt

    rows, columns = interactions.tags_a, interactions.tags_b
    size = 1.6 + 0.27 * max(len(rows), len(columns))
    figure, axes = plt.subplots(2, 2, figsize=(2 * size + 1.5, 2 * size), constrained_layout=True)
    summed = [np.where(interactions.count == 0, np.nan, values) for values in interactions.normalised()]
    means = [np.where(interactions.count < min_count, np.nan, values) for values in interactions.mean()]
    panels = [
        (summed[0], "summed positive / largest total"),
        (summed[1], "summed negative / largest total"),
        (means[0], f"mean positive per occurrence (>= {min_count})"),
        (means[1], f"mean negative per occurrence (>= {min_count})"),
    ]
    for axis, (values, name) in zip(axes.flat, panels, strict=True):
        positive = "positive" in name
        largest = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0
        largest = largest or 1.0
        limits = (0.0, largest) if positive else (-largest, 0.0)
        _heatmap(axis, values, rows, columns, "Reds" if positive else "Blues_r", limits, f"{name}; scale {largest:.3g}")
    figure.suptitle(title or f"POS interactions ({interactions.n_pairs} pairs)")
    return figure


def plot_shares(interactions_by_setting: dict[str, PosInteractions], top: int = 12) -> Figure:
    """Share of positive and of negative relevance of the ``top`` tag pairs (largest share in any setting),
    one bar per setting.
    """
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 0.35 * top + 1.8), constrained_layout=True)
    lookups = {name: i.lookup() for name, i in interactions_by_setting.items()}
    height = 0.8 / len(lookups)
    for axis, sign in zip(axes, ("positive", "negative"), strict=True):
        share = {name: {key: row[f"{sign}_share"] for key, row in lookup.items()} for name, lookup in lookups.items()}
        keys = {key for shares in share.values() for key in shares}
        largest = {key: max(shares.get(key, 0.0) for shares in share.values()) for key in keys}
        chosen = sorted(keys, key=lambda key: (-largest[key], key))[:top][::-1]
        for n, (name, shares) in enumerate(share.items()):
            values = [shares.get(key, 0.0) for key in chosen]
            axis.barh(np.arange(len(chosen)) + n * height, values, height=height, label=name)
        axis.set_yticks(np.arange(len(chosen)) + 0.4 - height / 2, [f"{a} – {b}" for a, b in chosen], fontsize=8)
        axis.set_xlabel(f"share of all {sign} relevance")
        axis.set_title(f"{sign} relevance")
        axis.legend(fontsize=8)
    return figure


def plot_changes(changes: dict[str, dict[str, list[Change]]]) -> Figure:
    """Per monolingual setting (rows) and sign (columns): the tag pairs whose relevance share changes most in
    the mixed setting; bars right of zero gain share in the mixed setting.
    """
    import matplotlib.pyplot as plt

    rows = list(changes)
    k = max((len(cs) for signs in changes.values() for cs in signs.values()), default=1)
    figure, axes = plt.subplots(
        len(rows), 2, figsize=(12, (0.3 * k + 1.4) * len(rows)), squeeze=False, constrained_layout=True
    )
    for r, mono in enumerate(rows):
        for c, sign in enumerate(("positive", "negative")):
            axis = axes[r, c]
            items = changes[mono][sign][::-1]
            values = [item.change for item in items]
            axis.barh(range(len(items)), values, color=[POSITIVE if v > 0 else NEGATIVE for v in values])
            axis.set_yticks(range(len(items)), [f"{i.tag_a} – {i.tag_b}" for i in items], fontsize=8)
            axis.axvline(0, color="black", linewidth=0.6)
            axis.set_xlabel(f"change of share of {sign} relevance")
            axis.set_title(f"mixed vs {mono}: {sign}", fontsize=10)
    return figure


def plot_level_errors(comparison: ModelComparison) -> Figure:
    """Mean error (predicted minus gold similarity on [0, 1], band: one standard deviation) and mean absolute
    error per gold-similarity level, one line per model.
    """
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    for model in comparison.models:
        centres = [(level.low + level.high) / 2 for level in model.levels]
        mean = np.array([level.mean_error for level in model.levels])
        std = np.array([level.std_error for level in model.levels])
        (line,) = axes[0].plot(centres, mean, marker="o", label=model.label)
        axes[0].fill_between(centres, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        axes[1].plot(centres, [level.mean_absolute_error for level in model.levels], marker="o", label=model.label)
    axes[0].axhline(0, color="black", linewidth=0.6)
    axes[0].set_ylabel("predicted - gold similarity")
    axes[1].set_ylabel("|predicted - gold similarity|")
    for axis in axes:
        axis.set_xlabel(f"gold similarity level ({comparison.dataset})")
        axis.legend(fontsize=8)
    return figure


def plot_quantile_interactions(comparison: ModelComparison) -> Figure:
    """Top word-pair interactions (positive red, negative blue) in the pairs each model (rows) finds most and
    least similar (columns).
    """
    import matplotlib.pyplot as plt

    models = comparison.models
    k = max((len(ts) for m in models for signs in m.top.values() for ts in signs.values()), default=1)
    figure, axes = plt.subplots(
        len(models), 2, figsize=(12, (0.5 * k + 1.5) * len(models)), squeeze=False, constrained_layout=True
    )
    for r, model in enumerate(models):
        for c, group in enumerate(("highest", "lowest")):
            axis = axes[r, c]
            items = model.top[group]["negative"][::-1] + model.top[group]["positive"][::-1]
            values = [item.relevance for item in items]
            axis.barh(range(len(items)), values, color=[POSITIVE if v > 0 else NEGATIVE for v in values])
            axis.set_yticks(range(len(items)), [item.label for item in items], fontsize=8)
            axis.axvline(0, color="black", linewidth=0.6)
            axis.set_xlabel("summed relevance")
            axis.set_title(f"{model.label}: {group} {comparison.fraction:.0%} similarity", fontsize=10)
    return figure
