"""Does a fresh run reproduce the committed one? Compare two `reports/summary.json` figure by figure.

`make reproduce` clones the repository into a scratch folder, runs the default pipeline there (`make repro`) and
calls `python -m fli2moe.reproduce COMMITTED FRESH`, which prints one row per headline figure and verdict:

    figure, committed, fresh, tolerance, within

A headline figure is a mean over the trained seeds ({mean, std, seeds, ...}, `report.build.headline`). A
fresh run on another machine trains the same seeds, but last-bit differences (another CPU's kernels, another
library build) send training elsewhere much as another seed would. So the tolerance is the 95% range of the
difference of two means over `seeds` independent seeds each, with the committed run's seed spread:

    tolerance = 1.96 * sqrt(2 / seeds) * std

(zero when the committed run has no spread: one seed, or a figure that does not depend on the seed). Every
verdict must come out the same. The exit code is 0 when every row is within, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

Z = 1.96  # two-sided 95%
FIGURE_KEYS = {"mean", "std", "seeds"}


@dataclass(frozen=True)
class Row:
    figure: str  # dotted path in summary.json, e.g. "synthetic.fl_i2moe.synergy_precision@1"
    committed: float | str | None
    fresh: float | str | None  # None: the fresh run lacks it
    tolerance: float | None  # None for a verdict, which must be equal
    within: bool


def tolerance(figure: Mapping) -> float:
    """1.96 sqrt(2 / seeds) std of a headline figure {mean, std, seeds} (module docstring)."""
    return Z * math.sqrt(2 / figure["seeds"]) * figure["std"]


def headline_figures(summary: Mapping, path: str = "") -> Iterator[tuple[str, Mapping]]:
    """(dotted path, figure) of every headline figure of a summary: the dicts holding mean, std and seeds."""
    for name, value in summary.items():
        if isinstance(value, Mapping):
            where = f"{path}.{name}" if path else name
            if FIGURE_KEYS <= set(value):
                yield where, value
            else:
                yield from headline_figures(value, where)


def verdicts(summary: Mapping) -> dict[str, str]:
    """{"<claim>.<subject>": status} of a summary's `verdicts`."""
    return {f"{claim}.{subject}": status for claim, by_subject in summary.get("verdicts", {}).items()
            for subject, status in by_subject.items()}


def compare(committed: Mapping, fresh: Mapping) -> list[Row]:
    """One row per headline figure of the committed summary, then one per verdict (module docstring)."""
    fresh_figures = dict(headline_figures(fresh))
    rows = []
    for name, figure in headline_figures(committed):
        other = fresh_figures.get(name)
        limit = tolerance(figure)
        value = None if other is None else other["mean"]
        within = value is not None and abs(value - figure["mean"]) <= limit
        rows.append(Row(name, figure["mean"], value, limit, within))
    fresh_verdicts = verdicts(fresh)
    for name, status in verdicts(committed).items():
        other = fresh_verdicts.get(name)
        rows.append(Row(f"verdict {name}", status, other, None, other == status))
    return rows


def table(rows: list[Row]) -> str:
    """The rows as an aligned text table with a last line counting those within."""
    def cell(value) -> str:
        return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = [("figure", "committed", "fresh", "tolerance", "within")]
    lines += [(r.figure, cell(r.committed), cell(r.fresh), "equal" if r.tolerance is None else cell(r.tolerance),
               "yes" if r.within else "NO") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    text = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
            for line in lines]
    return "\n".join(text + [f"{sum(r.within for r in rows)} of {len(rows)} within"])


def read_summary(path: Path) -> dict:
    """A summary.json; ValueError naming the file when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable summary.json ({e})") from e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("committed", type=Path, help="the committed run's reports/summary.json")
    parser.add_argument("fresh", type=Path, help="the fresh run's reports/summary.json")
    args = parser.parse_args(argv)
    try:
        rows = compare(read_summary(args.committed), read_summary(args.fresh))
    except (ValueError, KeyError, TypeError) as e:
        print(f"reproduce: {e}", file=sys.stderr)
        return 2
    print(table(rows))
    return 0 if all(r.within for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
