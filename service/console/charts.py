"""Small inline SVG charts for the console: server-rendered, no script, no external asset."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 240, 44


def bars(
    series: Sequence[Sequence[int]],
    *,
    label: str,
    classes: Sequence[str] = ("ok", "bad"),
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Markup:
    """Stacked bars, one per minute, of one or more series (drawn bottom-up in order);
    `label` names the chart for screen readers and as its tooltip."""
    points = max((len(values) for values in series), default=0)
    if points == 0:
        return Markup("")
    peak = max(max(sum(values[i] for values in series) for i in range(points)), 1)
    step = width / points
    gap = 1 if step > 3 else 0
    rects: list[str] = []
    for i in range(points):
        bottom = float(height)
        for values, css in zip(series, classes, strict=False):
            value = values[i]
            if not value:
                continue
            tall = max(value / peak * (height - 2), 1.0)
            bottom -= tall
            rects.append(
                f'<rect class="{css}" x="{i * step:.1f}" y="{bottom:.1f}" '
                f'width="{max(step - gap, 0.5):.1f}" height="{tall:.1f}"/>'
            )
    title = escape(f"{label} (peak {peak} per minute)")
    svg = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{title}"><title>{title}</title>'
        f'<line class="axis" x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}"/>'
        + "".join(rects)
        + "</svg>"
    )
    return Markup(svg)  # noqa: S704 - built from numbers and an escaped title only
