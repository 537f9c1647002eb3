"""Drawing a chart as SVG a report page may inline: matplotlib's settings, and what it may hold.

matplotlib's SVG backend draws every chart (:func:`drawing`, :func:`to_svg`); its text stays
text, escaped by matplotlib's writer. :func:`inline_svg` then admits only the SVG elements and
attributes a chart needs (no script, no event handler, no reference out of the chart), or
refuses the chart with :class:`UnsafeSvg`. The helpers at the end give every chart the same
legend, ticks and grid.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a chart is drawn: `failfast` starts without matplotlib
    from markupsafe import Markup
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType


# Colours: the status colours of the page, and one per attempt of a checkout.
RED, GREEN, BLUE, GREY, ORANGE = "#cf222e", "#1a7f37", "#0969da", "#57606a", "#bc4c00"
ATTEMPT_COLOURS = ("#57606a", "#0969da", "#8250df", "#1a7f37", "#bf8700", "#cf222e")
WIDTH_IN = 7.2  # inches; at matplotlib's 72 points an inch, 518 pt, scaled to the page's width
# At most this many rows (checkouts, attempts, probes) in one chart, whatever the data holds.
MAX_ROWS = 40
# matplotlib's settings for every chart: text as SVG <text> (small, selectable, and escaped by
# matplotlib's writer) rather than glyph outlines; no TeX-like $math$ in labels; ids from a
# fixed salt so the same report gives the same page.
RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "failfast",
    "text.parse_math": False,
    "font.size": 8,
    "font.sans-serif": ["DejaVu Sans"],
    "axes.titlesize": 9,
    "legend.fontsize": 7,
    "legend.frameon": False,
}
SVG_NS, XLINK_NS = "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"
# What matplotlib's SVG backend writes for the charts drawn here; anything else drops the chart.
SVG_TAGS = frozenset(
    {
        "svg",
        "title",
        "g",
        "defs",
        "style",
        "path",
        "use",
        "clipPath",
        "pattern",
        "rect",
        "text",
        "tspan",
    }
)
SVG_ATTRIBUTES = frozenset(
    {
        "id",
        "d",
        "x",
        "y",
        "width",
        "height",
        "viewBox",
        "version",
        "style",
        "transform",
        "clip-path",
        "fill",
        "patternUnits",
        "href",
        "type",
        "role",
        "aria-label",
        "class",
    }
)
_URL = re.compile(r"url\(\s*#([^)\s]*)\s*\)")


class UnsafeSvg(ValueError):
    """A chart's SVG holds something a report page must not carry: it is left out."""


@dataclass(frozen=True, slots=True)
class DrawnChart:
    """One chart of a check: the inline SVG, a title, and what a learner should see in it."""

    svg: Markup
    title: str
    caption: str


@contextlib.contextmanager
def drawing(width: float, height: float, panels: int = 1) -> Iterator[tuple[Figure, list[Axes]]]:
    """A figure of ``panels`` plots, one above the other on one x axis.

    Under the charts' settings, which apply as text is created: the drawing happens inside.
    """
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(width, height), layout="constrained")
        plots = [figure.add_subplot(panels, 1, 1)]
        plots += [figure.add_subplot(panels, 1, n, sharex=plots[0]) for n in range(2, panels + 1)]
        for axes in plots:
            axes.spines[["top", "right"]].set_visible(False)
            axes.set_axisbelow(True)
        yield figure, plots


def to_svg(figure: Figure, key: str, title: str) -> Markup:
    """The figure as SVG for inlining, under ids of its own (``key``), titled for screen readers."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context(RC):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return inline_svg(buffer.getvalue(), key, title)


def inline_svg(text: str, key: str, title: str) -> Markup:
    """An SVG document as an element to inline in a page, admitting only what charts use.

    Drops the metadata, prefixes every id with ``key`` (several charts share one page, and
    matplotlib names its groups alike in each), and raises :class:`UnsafeSvg` on any element
    or attribute outside the lists above, an event handler, or a reference out of the chart.
    """
    from markupsafe import Markup

    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", XLINK_NS)
    start = text.find("<svg")
    if start < 0:
        raise UnsafeSvg("no <svg> element")
    root = ET.fromstring(text[start:])
    for parent in list(root.iter()):
        for child in list(parent):
            if _local(child.tag) == "metadata":
                parent.remove(child)
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", key)
    for element in root.iter():
        if _local(element.tag) not in SVG_TAGS:
            raise UnsafeSvg(f"<{_local(element.tag)}> is not drawn by a chart")
        for name, value in list(element.attrib.items()):
            local = _local(name)
            if local not in SVG_ATTRIBUTES or local.lower().startswith("on"):
                raise UnsafeSvg(f"attribute {local!r} is not drawn by a chart")
            if local == "href":
                if not value.startswith("#"):
                    raise UnsafeSvg("a reference out of the chart")
                element.set(name, f"#{prefix}-{value[1:]}")
            elif local == "id":
                element.set(name, f"{prefix}-{value}")
            else:
                element.set(name, _local_urls(value, prefix))
        if _local(element.tag) == "style" and element.text:
            element.text = _local_urls(element.text, prefix)
            if "@" in element.text or "\\" in element.text:
                raise UnsafeSvg("a style sheet with at-rules or escapes")
    label = ET.Element(f"{{{SVG_NS}}}title")
    label.text = title
    root.insert(0, label)
    root.set("role", "img")
    root.set("class", "chart-svg")
    return Markup(ET.tostring(root, encoding="unicode"))


def _local(name: str) -> str:
    """An element's or attribute's name without its namespace."""
    return name.rsplit("}", 1)[-1]


def _local_urls(value: str, prefix: str) -> str:
    """``url(#id)`` references renamed to the prefixed ids; any other ``url(`` is refused."""
    renamed = _URL.sub(lambda m: f"url(#{prefix}-{m.group(1)})", value)
    if "url(" in _URL.sub("", renamed).replace(" ", ""):
        raise UnsafeSvg("a url() out of the chart")
    return renamed


class Once:
    """Legend labels, each given once however many marks draw it (the rest get none)."""

    def __init__(self) -> None:
        self.shown: set[str] = set()

    def __call__(self, label: str) -> str:
        """``label`` the first time, matplotlib's "no legend" after."""
        if label in self.shown:
            return "_nolegend_"
        self.shown.add(label)
        return label


def legend_below(figure: Figure, axes: Axes, columns: int = 3) -> None:
    """The legend under the plot, where it covers nothing."""
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=columns)


def integer_ticks(axes: Axes) -> None:
    """Counts on the y axis: no 1.5 attempts."""
    from matplotlib.ticker import MaxNLocator

    axes.yaxis.set_major_locator(MaxNLocator(integer=True))


def plain_log_ticks(axes: Axes) -> None:
    """A log axis labelled 1, 10, 100, 1,000: matplotlib's own labels are TeX-like math."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.{_decimals(value)}f}"))
    axes.yaxis.set_minor_formatter(NullFormatter())


def _decimals(value: float) -> int:
    """Decimals to show a tick of a log axis exactly: 0.1 has one, 10 none."""
    return 0 if value >= 1 else min(3, math.ceil(-math.log10(value)))


def seconds_axis(axes: Axes, what: str) -> None:
    """An x axis of seconds, labelled with what they count, and a light grid along it."""
    axes.set_xlabel(f"{what} (s)")
    axes.grid(axis="x", color="#e5e5e5", linewidth=0.6)
