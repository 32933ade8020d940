"""The headline figures of two `make bench` runs side by side (`make bench-pythons` runs the
benchmarks on two Pythons in turns and calls this): every number in each benchmark's JSON
outside its settings and its per-round detail, with the second run's figure over the first's.

    python -m bench.compare_pythons var/bench/python3.11 var/bench/python3.13
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Inputs and per-round detail, not results: the medians over the rounds are kept.
SKIPPED_KEYS = {"settings", "rounds", "host", "cpus"}


def headline_figures(document: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """(key path, number) for every number in a benchmark's results, in document order."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key not in SKIPPED_KEYS:
                yield from headline_figures(value, f"{path}.{key}" if path else key)
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from headline_figures(value, f"{path}[{index}]")
    elif isinstance(document, int | float) and not isinstance(document, bool):
        yield path, float(document)


WIDTH = 58  # of the figure's key path


def side_by_side(first: Path, second: Path) -> list[str]:
    """Figures both runs have, benchmark by benchmark; a benchmark only one run has is named."""
    lines = [f"{'figure':<{WIDTH}} {first.name:>12} {second.name:>12} {'ratio':>7}"]
    names = sorted({path.name for path in [*first.glob("*.json"), *second.glob("*.json")]})
    for name in names:
        missing = [folder for folder in (first, second) if not (folder / name).exists()]
        if missing:
            lines.append(f"{Path(name).stem}: not in {missing[0]}")
            continue
        lines.append(f"\n== {Path(name).stem}")
        theirs = dict(headline_figures(json.loads((second / name).read_text())))
        for key, value in headline_figures(json.loads((first / name).read_text())):
            if key in theirs:
                ratio = theirs[key] / value if value else math.nan
                figures = f"{value:>12.4g} {theirs[key]:>12.4g} {ratio:>7.2f}"
                lines.append(f"{key[:WIDTH]:<{WIDTH}} {figures}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="one run's var/bench copy (the baseline)")
    parser.add_argument("second", type=Path, help="the other run's")
    args = parser.parse_args(argv)
    print("\n".join(side_by_side(args.first, args.second)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
