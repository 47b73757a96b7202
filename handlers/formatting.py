"""Turning engine values into the short texts admins read in a chat."""

from __future__ import annotations

from collections.abc import Iterable

from scheduler.enrollment import EnrollReport, ProblemList
from scheduler.phones import mask_phone
from scheduler.steps import StepSpec

#: problem lines listed in a chat answer before "... and N more"
LISTED = 15


def plural(count: int, word: str, suffix: str = "s") -> str:
    return f"{count} {word}{'' if count == 1 else suffix}"


def excerpt(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def describe_step(spec: StepSpec) -> str:
    """``Day 3 at 10:00 · image · "Here's a quick tip, {name}"``."""
    timing = spec.timing.describe()
    if spec.kind == "template":
        assert spec.template is not None
        params = " ".join(spec.template.params)
        what = f"template {spec.template.name} ({spec.template.language}) {params}".rstrip()
    elif spec.kind == "media":
        what = f"{spec.media_type} {spec.media_url}"
        if spec.body:
            what += f' · "{excerpt(spec.body, 40)}"'
    else:
        what = f'"{excerpt(spec.body)}"'
    if spec.fallback is not None:
        what += f" || fallback template {spec.fallback.name}"
    return f"{timing} · {what}"


def _problem_lines(title: str, problems: ProblemList, *, show_phone: bool = True) -> list[str]:
    if not problems.count:
        return []
    lines = [f"{title}: {problems.count}"]
    for item in problems.lines[:LISTED]:
        where = f"line {item.line}" if item.line is not None else "—"
        phone = f" {item.phone}" if show_phone and item.phone else ""
        lines.append(f"  {where}{phone}: {item.reason}")
    if problems.count > LISTED:
        lines.append(f"  … and {problems.count - LISTED} more")
    return lines


def enroll_report(report: EnrollReport) -> str:
    """The per-import report every bulk enrollment answers with (spec §3)."""
    lines = [f"Enrolled {report.enrolled} of {report.total} into {report.sequence!r}."]
    lines += _problem_lines("Already enrolled", report.already_enrolled)
    lines += _problem_lines("Duplicates in this import", report.duplicates)
    lines += _problem_lines("Opted out (refused)", report.opted_out)
    lines += _problem_lines("Invalid", report.invalid)
    return "\n".join(lines)


def masked(phones: Iterable[str | None]) -> str:
    return ", ".join(mask_phone(p) for p in phones if p)
