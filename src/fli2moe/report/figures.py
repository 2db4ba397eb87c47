"""The report's figures (seaborn / matplotlib, written as PNG).

Each function takes what it draws (frames, arrays, images) and a path, so it can be tested on small
inputs; `report.build` gathers the inputs from the run.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: figures are only written to files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from fli2moe.artifacts import atomic_open  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")
SELECTION_COLORS = {"ranked": "#c0392b", "random_candidates": "#7f8c8d", "random_all": "#bdc3c7"}


def save(fig, path: Path) -> Path:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def routing_violins(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """frame: one row per (model, seed, sample, expert) with its routing `weight`."""
    fig, ax = plt.subplots(figsize=(1.6 * frame["expert"].nunique() + 2, 3.8))
    sns.violinplot(data=frame, x="expert", y="weight", hue="model", cut=0, density_norm="width", inner="quartile",
                   ax=ax)
    ax.set(title=title, xlabel="", ylabel="routing weight", ylim=(0, 1))
    ax.tick_params(axis="x", labelrotation=15)
    return save(fig, path)


def faithfulness_curves(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """frame: per example, model, modality, measure, K and `tokens` ("top-K by the map" | "random"): `value`.

    Lines are means over examples, bands their 95% bootstrap CI; the random band is the reference.
    """
    grid = sns.relplot(data=frame, x="k_percent", y="value", hue="model", style="tokens", row="measure",
                       col="modality", kind="line", errorbar=("ci", 95), n_boot=200, seed=0, markers=True,
                       dashes={"top-K by the map": "", "random": (3, 2)}, height=2.8, aspect=1.3,
                       facet_kws={"sharey": "row"})
    grid.set_axis_labels("K (% of the modality's tokens)", "target probability drop")
    grid.set_titles("{row_name}, {col_name}")
    grid.figure.suptitle(title, y=1.02)
    return save(grid.figure, path)


def ablation_curves(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """frame: rows of metrics/ablate/curves (budget, series "<ranking>/<selection>", drop, low, high) + model."""
    frame = frame.assign(ranking=frame["series"].str.split("/").str[0].str.upper(),
                         selection=frame["series"].str.split("/").str[1])
    models, rankings = list(dict.fromkeys(frame["model"])), list(dict.fromkeys(frame["ranking"]))
    fig, axes = plt.subplots(len(models), len(rankings), figsize=(4.2 * len(rankings), 3.2 * len(models)),
                             squeeze=False, sharey=True)
    for (model, ranking), ax in zip([(m, r) for m in models for r in rankings], axes.flat):
        part = frame[(frame["model"] == model) & (frame["ranking"] == ranking)]
        for selection, rows in part.groupby("selection", sort=False):
            color = SELECTION_COLORS.get(selection)
            ax.plot(rows["budget"], rows["drop"], marker="o", color=color, label=selection.replace("_", " "))
            ax.fill_between(rows["budget"], rows["low"], rows["high"], color=color, alpha=0.2)
        ax.set(title=f"{model}: top pairs by {ranking}", xlabel="pairs removed (b)", ylabel="target probability drop")
        ax.set_xticks(sorted(part["budget"].unique()))
    axes.flat[0].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def recovery_bars(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """frame: model, pair ("synergy by SII" | "redundancy by RG"), k ("P@1" | "P@5"), precision (one row per
    seed), chance. Bars: means over the seeds; whiskers: their standard deviation."""
    grid = sns.catplot(data=frame, x="k", y="precision", hue="model", col="pair", kind="bar", errorbar="sd",
                       height=3.2, aspect=1.1)
    for ax, (_, part) in zip(grid.axes.flat, frame.groupby("pair", sort=False)):
        for i, (_, row) in enumerate(part.drop_duplicates("k").iterrows()):
            ax.hlines(row["chance"], i - 0.4, i + 0.4, colors="black", linestyles="dashed",
                      label="chance" if i == 0 else None)
        ax.set(ylim=(0, 1), xlabel="", ylabel="share of examples")
    grid.axes.flat[0].legend(fontsize="small", loc="upper left")
    grid.figure.suptitle(title, y=1.04)
    return save(grid.figure, path)


def heat_over_image(ax, image: np.ndarray, scores: np.ndarray, grid: tuple[int, int], title: str = "") -> None:
    """Draw `image` [H, W, 3] with the token scores [rows * cols] (row-major patch grid) laid over it."""
    height, width = image.shape[:2]
    heat = np.abs(scores).reshape(grid)
    ax.imshow(image, extent=(0, width, height, 0))
    ax.imshow(heat / max(heat.max(), 1e-12), extent=(0, width, height, 0), cmap="inferno", alpha=0.55,
              vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def attribution_overlays(examples: list[dict], map_names: list[str], grids: dict[str, tuple[int, int]],
                         path: Path, title: str) -> Path:
    """examples: {"id", "images": {modality: [H, W, 3]}, "maps": {name: {modality: scores [tokens]}}}.

    One row per example; per map, one panel per modality (the map's |scores| normalised per panel).
    """
    modalities = list(grids)
    columns = [(name, m) for name in map_names for m in modalities]
    fig, axes = plt.subplots(len(examples), len(columns), figsize=(1.3 * len(columns), 2.7 * len(examples)),
                             squeeze=False)
    for r, (row, example) in enumerate(zip(axes, examples)):
        for c, (ax, (name, modality)) in enumerate(zip(row, columns)):
            heading = "\n".join(short_map_name(name).split(" ", 1)) + f"\n{modality}" if r == 0 else ""
            heat_over_image(ax, example["images"][modality], example["maps"][name][modality], grids[modality],
                            heading)
            if c == 0:
                ax.text(-0.08, 0.5, f"UI {example['id']}", transform=ax.transAxes, rotation=90, va="center",
                        ha="right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def short_map_name(name: str) -> str:
    """"fl_i2moe expert2_synergy" -> "fl_i2moe synergy": the roster position is in the map's order already."""
    model, _, rest = name.partition(" ")
    return f"{model} {rest.split('_', 1)[1] if rest.startswith('expert') else rest}"


def interaction_matrices(matrices: dict[str, np.ndarray], labels_a: list[str], labels_b: list[str],
                         names: tuple[str, str], axes) -> None:
    """{panel title: [n_a, n_b] index values} of one example as heatmaps, one axis each, diverging around zero."""
    for ax, (name, values) in zip(axes, matrices.items()):
        bound = max(np.abs(values).max(), 1e-12)
        sns.heatmap(values, ax=ax, cmap="RdBu_r", vmin=-bound, vmax=bound, xticklabels=labels_b,
                    yticklabels=labels_a, cbar_kws={"shrink": 0.8}, square=True)
        ax.set(title=name, xlabel=f"{names[1]} token", ylabel=f"{names[0]} token")


def interaction_example(matrices: dict[str, np.ndarray], labels_a: list[str], labels_b: list[str],
                        names: tuple[str, str], path: Path, title: str, images: list[np.ndarray] | None = None,
                        top_pairs: list[tuple[int, int, str]] | None = None,
                        grids: list[tuple[int, int]] | None = None) -> Path:
    """The probed indices' matrices of one example ({panel title: [n_a, n_b]}, `interaction_matrices`); with
    `images` (two modalities' pictures), also the top pairs drawn as lines between the patch centres in a
    last panel. top_pairs: (token in a, token in b, "synergy" | "redundancy")."""
    panels = len(matrices) + (images is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4.4),
                             gridspec_kw={"width_ratios": [1] * len(matrices) + [1.1] * (images is not None)})
    interaction_matrices(matrices, labels_a, labels_b, names, axes[:len(matrices)])
    if images is not None:
        ax = axes[-1]
        (image_a, image_b), gap = images, 12
        height, width_a = image_a.shape[:2]
        offset = width_a + gap
        ax.imshow(image_a, extent=(0, width_a, height, 0))
        ax.imshow(image_b, extent=(offset, offset + image_b.shape[1], height, 0))
        for token_a, token_b, kind in top_pairs:
            (ya, xa), (yb, xb) = (patch_centre(token_a, grids[0], image_a.shape),
                                  patch_centre(token_b, grids[1], image_b.shape))
            ax.plot([xa, offset + xb], [ya, yb], color="#c0392b" if kind == "synergy" else "#2471a3", lw=2,
                    marker="o", ms=4, alpha=0.9)
        ax.set(xlim=(0, offset + image_b.shape[1]), ylim=(height, 0), title="top pairs: red SII, blue RG")
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def patch_centre(token: int, grid: tuple[int, int], shape) -> tuple[float, float]:
    """(y, x) pixel centre of a row-major patch token in an image of `shape` [H, W, ...]."""
    rows, cols = grid
    return (token // cols + 0.5) * shape[0] / rows, (token % cols + 0.5) * shape[1] / cols
