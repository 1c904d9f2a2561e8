"""The plot of docs/benchmarks.md's scale runs (issue 12): how each cost grows with the
release's size and with the number of chunks, as an SVG written without a plotting
library (the numbers are those of the runs the tables report).

    python bench/plot_scale.py            # writes docs/scale.svg

Left: median seconds of each query against the number of objects (2M and 20M objects,
``bench/query.py``), qserv_py solid, the oracle dashed. Right: medians against the
number of chunks of the same 2M objects (192 and 12,283 chunks, ``bench/scale.py``).
Both axes logarithmic; a line of slope 1 (cost in proportion) is drawn for reference.
"""

from __future__ import annotations

import math
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "scale.svg"

#: query -> [(objects, qserv_py s, oracle s)] (bench/query.py, 2026-12-08)
BY_SIZE = {
    "cone r = 6′": [(2e6, 2.72e-3, 2.02e-3), (2e7, 4.93e-3, 10.0e-3)],
    "objectId lookup": [(2e6, 2.5e-3, 1.26e-3), (2e7, 3.2e-3, 1.78e-3)],
    "light curve": [(2e6, 2.41e-3, 1.09e-3), (2e7, 3.79e-3, 2.05e-3)],
    "COUNT(*) ForcedSource": [(2e6, 0.791, 0.802), (2e7, 4.74, 4.87)],
    "AVG … GROUP BY band": [(2e6, 3.62, 3.78), (2e7, 23.33, 23.05)],
}
#: query -> [(chunks, qserv_py s)] (bench/scale.py, 2026-12-07, 2M objects)
BY_CHUNKS = {
    "cone r = 6′": [(192, 9.9e-3), (12_283, 6.3e-3)],
    "objectId lookup": [(192, 7.2e-3), (12_283, 6.6e-3)],
    "COUNT(*) Object": [(192, 0.81), (12_283, 2.59)],
    "grouped AVG": [(192, 1.68), (12_283, 3.42)],
    "load (s / 100)": [(192, 0.947), (12_283, 10.502)],
}
COLOURS = ("#1b6ca8", "#d1495b", "#2e933c", "#8e44ad", "#e08e0b")
W, H, PAD = 440, 320, 56


def _panel(
    x0: float, title: str, xlabel: str, series: dict[str, list[tuple[float, ...]]]
) -> list[str]:
    xs = [p[0] for pts in series.values() for p in pts]
    ys = [v for pts in series.values() for p in pts for v in p[1:]]
    lx = (math.log10(min(xs)) - 0.15, math.log10(max(xs)) + 0.15)
    ly = (math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys))))

    def px(x: float) -> float:
        return x0 + PAD + (math.log10(x) - lx[0]) / (lx[1] - lx[0]) * (W - 2 * PAD)

    def py(y: float) -> float:
        return H - PAD - (math.log10(y) - ly[0]) / (ly[1] - ly[0]) * (H - 2 * PAD)

    out = [
        f'<text x="{x0 + W / 2}" y="20" text-anchor="middle" font-weight="bold">{title}</text>',
        f'<rect x="{x0 + PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" '
        'fill="none" stroke="#888"/>',
        f'<text x="{x0 + W / 2}" y="{H - 14}" text-anchor="middle">{xlabel}</text>',
        f'<text x="{x0 + 14}" y="{H / 2}" text-anchor="middle" '
        f'transform="rotate(-90 {x0 + 14} {H / 2})">seconds (median)</text>',
    ]
    for e in range(ly[0], ly[1] + 1):
        y = py(10.0**e)
        out.append(f'<line x1="{x0 + PAD}" y1="{y}" x2="{x0 + W - PAD}" y2="{y}" stroke="#eee"/>')
        out.append(f'<text x="{x0 + PAD - 6}" y="{y + 4}" text-anchor="end">1e{e}</text>')
    for x in sorted(set(xs)):
        out.append(f'<text x="{px(x)}" y="{H - PAD + 16}" text-anchor="middle">{x:,.0f}</text>')
    for pts, colour in zip(series.values(), COLOURS, strict=False):
        for side, dash in ((1, ""), (2, ' stroke-dasharray="5,4"')):
            if len(pts[0]) <= side:
                continue
            line = " ".join(f"{px(p[0]):.1f},{py(p[side]):.1f}" for p in pts)
            out.append(
                f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
            )
    for i, (name, colour) in enumerate(zip(series, COLOURS, strict=False)):
        y = H + 6 + 15 * i  # the legend, under the panel
        out.append(
            f'<line x1="{x0 + PAD}" y1="{y - 4}" x2="{x0 + PAD + 24}" y2="{y - 4}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        out.append(f'<text x="{x0 + PAD + 30}" y="{y}">{name}</text>')
    # slope 1 from the first point of the first series: cost in proportion to x
    first = next(iter(series.values()))[0]
    end = max(xs)
    out.append(
        f'<polyline points="{px(first[0]):.1f},{py(first[1]):.1f} '
        f'{px(end):.1f},{py(first[1] * end / first[0]):.1f}" fill="none" stroke="#aaa" '
        'stroke-dasharray="1,3"/>'
    )
    return out


def main() -> None:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H + 100}" '
        'font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        *_panel(0, "by release size (qserv_py solid, oracle dashed)", "objects", BY_SIZE),
        *_panel(W, "by number of chunks (2M objects, qserv_py)", "chunks", BY_CHUNKS),
        f'<text x="{W}" y="{H + 92}" text-anchor="middle" fill="#888">dotted: cost in '
        "proportion (slope 1)</text>",
        "</svg>",
    ]
    OUT.write_text("\n".join(parts) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
