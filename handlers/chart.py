"""The /stats chart: per-step outcomes above, the last days' trend below, as one PNG.

Built with matplotlib's object API (a ``Figure`` on a ``FigureCanvasAgg``) and never pyplot:
no global figure registry, no backend switch, no rcParams changes, so rendering is a pure
function of the report and safe to run in a worker thread. Sized for a phone: 1200×1000 px
with large type.
"""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import FuncFormatter, MaxNLocator

if TYPE_CHECKING:
    from handlers.stats import Counts, StatsReport, StepStats

WIDTH_PX, HEIGHT_PX, DPI = 1200, 1000, 150
FONT = "DejaVu Sans"  # bundled with matplotlib, so every install draws the same

#: (attribute of Counts, legend label, colour): the Okabe-Ito palette, safe for colour blindness
BARS = (
    ("sent", "sent", "#0072B2"),
    ("delivered", "delivered", "#56B4E9"),
    ("read", "read", "#009E73"),
    ("replied", "replied", "#E69F00"),
    ("failed", "failed", "#D55E00"),
    ("skipped", "skipped", "#999999"),
)
#: (attribute of DayStats, legend label, colour, marker, width): "sent" is drawn widest, so
#: it still shows where "delivered" runs on top of it
LINES = (
    ("sent", "sent", "#0072B2", "o", 3.5),
    ("delivered", "delivered", "#56B4E9", "s", 2.0),
    ("read", "read", "#009E73", "^", 2.0),
    ("replies", "replies", "#E69F00", "D", 2.0),
)
#: above this many groups the bars get too thin for a number on each
LABELLED_GROUPS = 6
TITLE_SIZE, LABEL_SIZE, TICK_SIZE, VALUE_SIZE = 14, 12, 11, 8.5
#: words that stay on one line with the number after them: "Day 3", "at 10:00", "after 2h"
_GLUED = re.compile(r"\b(Day|at|after) ")
_NBSP_AFTER = "\\1\N{NO-BREAK SPACE}"
#: points between an axes and its title, where the legend sits
LEGEND_ROOM = 26


def render_chart(report: StatsReport) -> bytes | None:
    """The PNG for a report, or None when there is nothing to draw (the text says so)."""
    if report.is_empty:
        return None
    figure = Figure(
        figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI),
        dpi=DPI,
        layout=ConstrainedLayoutEngine(h_pad=0.08, hspace=0.06),
    )
    FigureCanvasAgg(figure)
    bars, trend = figure.subplots(2, 1, height_ratios=(1.15, 1))
    _draw_bars(bars, report)
    _draw_trend(trend, report)
    heading = textwrap.shorten(report.sequence or "All sequences", 60, placeholder="…")
    figure.suptitle(_safe(heading), fontsize=TITLE_SIZE + 2, fontweight="bold", fontfamily=FONT)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def _draw_bars(ax: Axes, report: StatsReport) -> None:
    single = report.single
    groups: list[tuple[str, Counts]]
    if single is not None:
        groups = [(_step_label(step), step.counts) for step in single.steps]
        title, axis = "Per step (all time)", "Step"
    else:
        groups = [(s.name, s.totals) for s in report.sequences]
        title, axis = "Per sequence (all time)", "Sequence"
    ax.set_title(title, fontsize=TITLE_SIZE, loc="left", fontfamily=FONT, pad=LEGEND_ROOM)
    _style(ax)
    if not groups:
        ax.set_axis_off()
        ax.text(
            0.5,
            0.5,
            "No steps yet" if single is not None else "No live sequences",
            ha="center",
            va="center",
            fontsize=LABEL_SIZE,
            transform=ax.transAxes,
        )
        return
    width = 0.8 / len(BARS)
    labelled = len(groups) <= LABELLED_GROUPS
    top = max((getattr(c, a) for _, c in groups for a, _, _ in BARS), default=0)
    upright = top >= 1000  # long numbers stand on end so neighbours never touch
    for index, (attribute, label, colour) in enumerate(BARS):
        offset = (index - (len(BARS) - 1) / 2) * width
        values = [getattr(counts, attribute) for _, counts in groups]
        container = ax.bar(
            [g + offset for g in range(len(groups))], values, width, label=label, color=colour
        )
        if labelled:
            ax.bar_label(
                container,
                labels=[f"{v:,}" if v else "" for v in values],
                padding=2,
                fontsize=VALUE_SIZE,
                rotation=90 if upright else 0,
            )
    ax.set_xticks(range(len(groups)), _wrapped([name for name, _ in groups], len(groups)))
    ax.set_xlabel(axis, fontsize=LABEL_SIZE)
    ax.set_ylabel("Messages", fontsize=LABEL_SIZE)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    room = (1.35 if upright else 1.15) if labelled else 1.05  # head room for the numbers
    ax.set_ylim(0, max(1, top) * room)
    ax.legend(
        loc="lower left",
        bbox_to_anchor=(0, 1.01),
        ncols=len(BARS),
        fontsize=TICK_SIZE,
        frameon=False,
        handlelength=1.2,
        columnspacing=1.0,
        borderaxespad=0,
    )


def _draw_trend(ax: Axes, report: StatsReport) -> None:
    days = report.trend
    period = f"Last {len(days)} days" if len(days) > 1 else "Today"
    ax.set_title(
        f"{period} ({_safe(report.timezone)})",
        fontsize=TITLE_SIZE,
        loc="left",
        fontfamily=FONT,
        pad=LEGEND_ROOM,
    )
    _style(ax)
    xs = list(range(len(days)))
    for attribute, label, colour, marker, line_width in LINES:
        ax.plot(
            xs,
            [getattr(d, attribute) for d in days],
            label=label,
            color=colour,
            marker=marker,
            markersize=4.5 + line_width / 2,
            linewidth=line_width,
        )
    step = max(1, -(-len(days) // 14))  # at most ~14 tick labels
    ticks = xs[::-1][::step][::-1]
    today = report.generated_at.astimezone(ZoneInfo(report.timezone)).date()
    names = ["today" if days[i].day == today else f"{days[i].day:%d %b}".lstrip("0") for i in ticks]
    ax.set_xticks(ticks, names)
    slanted = len(ticks) > 7
    ax.tick_params(axis="x", labelrotation=45 if slanted else 0)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right" if slanted else "center")
        tick.set_rotation_mode("anchor")
    ax.set_xlim(-0.4, max(0, len(days) - 1) + 0.4)
    top = max((getattr(d, a) for d in days for a, *_ in LINES), default=0)
    ax.set_ylim(0, max(1, top) * 1.1)
    ax.set_ylabel("Per day", fontsize=LABEL_SIZE)
    ax.legend(
        loc="lower left",
        bbox_to_anchor=(0, 1.01),
        ncols=len(LINES),
        fontsize=TICK_SIZE,
        frameon=False,
        handlelength=1.8,
        borderaxespad=0,
    )


def _style(ax: Axes) -> None:
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10], integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.tick_params(labelsize=TICK_SIZE)
    ax.grid(axis="y", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _step_label(step: StepStats) -> str:
    """``2 · Day 3 at 10:00`` with "Day 3" and "at 10:00" kept whole when wrapped."""
    if step.number is None:
        return step.label
    return f"{step.number} · {_GLUED.sub(_NBSP_AFTER, step.timing)}"


def _wrapped(labels: Sequence[str], groups: int) -> list[str]:
    """Step and sequence names on at most three lines, each as wide as its group's room."""
    char_px = TICK_SIZE * DPI / 72 * 0.62  # an average DejaVu Sans character
    width = max(6, int(WIDTH_PX * 0.82 / max(groups, 1) / char_px))
    out = []
    for label in labels:
        lines = textwrap.wrap(_safe(label), width, break_long_words=False) or [""]
        lines = [line if len(line) <= width + 3 else line[: width + 2] + "…" for line in lines]
        if len(lines) > 3:
            lines = [*lines[:2], textwrap.shorten(" ".join(lines[2:]), width, placeholder="…")]
        out.append("\n".join(lines))
    return out


def _safe(text: str) -> str:
    """Text matplotlib draws as written: no mathtext, no glyphs the font lacks.

    Names come from admins and may hold emoji or ``$``; a missing glyph would only draw a
    box (and warn), a ``$`` pair would switch to math mode.
    """
    known = _glyphs()
    kept = "".join(c for c in text if ord(c) in known)
    return re.sub(r"[ \t\r\n]+", " ", kept).strip().replace("$", r"\$") or "?"


@cache
def _glyphs() -> frozenset[int]:
    path = font_manager.findfont(font_manager.FontProperties(family=FONT), fallback_to_default=True)
    return frozenset(FT2Font(path).get_charmap())
