"""What ``/help`` says: every command with its usage and an example that really parses.

The entries are data so that a usage error can quote its command's line, ``/help <command>``
can show one command in detail, and a test can parse every example.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandHelp:
    #: the command word as typed after '/', or two words for ``pause sending``
    name: str
    usage: str
    summary: str
    #: commands that parse as written; the first one is shown in the overview
    examples: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def one_line(self) -> str:
        """The usage with its example, for a usage error."""
        example = self.examples[0].splitlines()[0]
        return f"{self.usage} (e.g. {example})"


_SECTIONS: tuple[tuple[str, tuple[CommandHelp, ...]], ...] = (
    (
        "Sequences",
        (
            CommandHelp(
                "newsequence",
                "/newsequence <name>, then one step per line",
                "create a sequence; steps can also come later with /addstep",
                (
                    "/newsequence Tips\n"
                    "Day 1: Hi {first_name|there}! Welcome aboard.\n"
                    "Day 3 at 10:00: image https://example.com/tip.jpg | A quick tip, {name}\n"
                    "Day 7: template welcome_week en {first_name|there}",
                    "/newsequence Spring promo",
                ),
                ("Nothing is created if any line is wrong; the answer names the line.",),
            ),
            CommandHelp(
                "addstep",
                "/addstep <seq> <step>",
                "add a step",
                (
                    "/addstep tips after 2h: Did you get a chance to look?",
                    "/addstep tips Day 10: image https://example.com/promo.jpg | 20% off this week"
                    " || template promo_week en {first_name|there}",
                    "/addstep tips Day 14 at 18:00: template spring_offer en_US"
                    ' header=image:https://example.com/offer.jpg {first_name|there} "20% off"',
                    '/addstep "Spring promo" Day 2: audio https://example.com/hello.mp3',
                ),
                (
                    "image, video, document, audio and template start a media or template step "
                    "when written in lower case (media also when a link follows); anything "
                    "else is text.",
                ),
            ),
            CommandHelp(
                "editstep",
                "/editstep <seq> <n> <step>",
                "replace step n",
                ('/editstep "Spring promo" 2 Day 2 at 09:30: Morning, {first_name|there}!',),
            ),
            CommandHelp(
                "removestep", "/removestep <seq> <n>", "delete step n", ("/removestep tips 3",)
            ),
            CommandHelp(
                "sequences",
                "/sequences",
                "all sequences: enrolled, active, completed, opted out",
                ("/sequences",),
            ),
            CommandHelp(
                "sequence", "/sequence <seq>", "steps and per-step stats", ("/sequence tips",)
            ),
            CommandHelp("pause", "/pause <seq>", "stop a sequence's sends", ("/pause tips",)),
            CommandHelp(
                "resume",
                "/resume <seq>",
                "restart it; remaining steps shift by the paused time",
                ("/resume tips",),
            ),
            CommandHelp(
                "archive", "/archive <seq>", "end it and all its enrollments", ("/archive tips",)
            ),
            CommandHelp(
                "clone",
                "/clone <seq> <new name>",
                "copy the steps, not the enrollments",
                ("/clone tips Tips v2",),
            ),
            CommandHelp(
                "setkeyword",
                "/setkeyword <seq> <KEYWORD|off>",
                "a lead who sends the keyword is enrolled",
                ("/setkeyword tips JOIN TIPS", "/setkeyword tips off"),
            ),
            CommandHelp(
                "setwindow",
                "/setwindow <seq> <HH:MM-HH:MM|always|default>",
                "contact-local send hours",
                ("/setwindow tips 08:00-20:00", "/setwindow tips default"),
            ),
            CommandHelp(
                "stoponreply",
                "/stoponreply <seq> on|off",
                "stop a contact's drip when they reply",
                ("/stoponreply tips on",),
            ),
            CommandHelp(
                "describe",
                "/describe <seq> <text>",
                "set the description",
                ("/describe tips Weekly tips for new customers",),
            ),
        ),
    ),
    (
        "Contacts",
        (
            CommandHelp(
                "enroll",
                "/enroll <seq> <phone> [name] [--force]",
                "one per line for many, a CSV sent with this caption, or a .csv path "
                "(dripbot admin); --force re-enrolls after completion",
                (
                    "/enroll tips +15551234567 Ana Lima",
                    "/enroll tips\n+15551234567 Ana\n+447700900123 Ben",
                    "/enroll tips leads.csv",
                    "/enroll tips +15551234567 Ana --force",
                ),
                (
                    "Numbers without a country code use the default region.",
                    "CSV columns: phone, and optionally name, first_name, email, company, "
                    "timezone; any other column is a custom field.",
                ),
            ),
            CommandHelp(
                "unenroll",
                "/unenroll <seq> <phone>",
                "stop one contact",
                ("/unenroll tips +15551234567",),
            ),
            CommandHelp(
                "pausecontact",
                "/pausecontact <phone>",
                "hold every drip of a contact",
                ("/pausecontact +15551234567",),
            ),
            CommandHelp(
                "resumecontact",
                "/resumecontact <phone>",
                "release them",
                ("/resumecontact +15551234567",),
            ),
            CommandHelp(
                "contact",
                "/contact <phone>",
                "enrollments, last messages, opt-out state",
                ("/contact +15551234567",),
            ),
            CommandHelp(
                "optout",
                "/optout <phone>",
                "opt a number out of everything",
                ("/optout +15551234567",),
            ),
            CommandHelp("optouts", "/optouts", "list opted-out numbers", ("/optouts",)),
        ),
    ),
    (
        "Checking and sending",
        (
            CommandHelp(
                "preview",
                "/preview <seq> [phone]",
                "every step rendered for that contact (or a sample)",
                ("/preview tips +15551234567", "/preview tips"),
            ),
            CommandHelp(
                "test",
                "/test <seq> <phone>",
                "send every step now to a test number",
                ("/test tips +15551234567",),
            ),
            CommandHelp(
                "queue", "/queue", "due now, next hour, next day, retrying, failed", ("/queue",)
            ),
            CommandHelp("stats", "/stats [seq]", "summary and a chart", ("/stats tips", "/stats")),
            CommandHelp(
                "export", "/export <seq>", "enrollments as a CSV document", ("/export tips",)
            ),
            CommandHelp("pause sending", "/pause sending", "stop all sending", ("/pause sending",)),
            CommandHelp(
                "resume sending",
                "/resume sending",
                "restart it (e.g. after a token error)",
                ("/resume sending",),
            ),
            CommandHelp(
                "help",
                "/help [command]",
                "this list (also /start), or one command in detail",
                ("/help enroll", "/help", "/start"),
            ),
        ),
    ),
)

ENTRIES: tuple[CommandHelp, ...] = tuple(entry for _, entries in _SECTIONS for entry in entries)
_BY_NAME = {entry.name: entry for entry in ENTRIES}
#: Telegram sends /start when a user first opens the bot's chat
_ALIASES = {"start": "help"}

STEP_LINES = """\
Step lines: <timing>: <message>
 timing: Day N, Day N at HH:MM (contact-local), after 30s|30m|2h|5d
 message: text; image|video|document|audio <url> | <caption> (audio: no caption); \
template <name> <language> [header=image:<url>] <param> ... (quote a param with spaces)
 a text or media step may end with || template <name> <language> <param> ..., \
sent instead when the lead's 24-hour window is closed
 personalize with {name} {first_name} {phone} {company} {email} or any custom field; \
{first_name|there} gives a fallback"""


def _overview() -> str:
    lines = ['Commands (quote a name with spaces: "Spring promo"; /help <command> for more)']
    for title, entries in _SECTIONS:
        lines.append("")
        lines.append(title)
        for entry in entries:
            lines.append(f"{entry.usage} — {entry.summary}")
            example = entry.examples[0].replace("\n", "\n   ")
            if example != entry.usage:
                lines.append(f"   e.g. {example}")
    lines.append("")
    lines.append(STEP_LINES)
    return "\n".join(lines)


HELP_TEXT = _overview()


def find(name: str) -> CommandHelp | None:
    """The entry for ``enroll``, ``/Enroll`` or ``pause sending``; None if there is none."""
    key = " ".join(name.lower().lstrip("/").split())
    return _BY_NAME.get(_ALIASES.get(key, key))


def usage(command_name: str) -> str:
    """One line: the command's usage and an example. Raises KeyError for an unknown name."""
    entry = find(command_name)
    if entry is None:
        raise KeyError(command_name)
    return entry.one_line()


def details(command_name: str) -> str:
    """``/help <command>``: usage, summary, every example and the notes."""
    entry = find(command_name)
    if entry is None:
        raise KeyError(command_name)
    lines = [entry.usage, entry.summary[:1].upper() + entry.summary[1:] + ".", ""]
    lines.append("Examples:")
    for example in entry.examples:
        lines += [example, ""] if "\n" in example else [example]
    if entry.notes:
        lines += ["", *entry.notes]
    if entry.name in ("newsequence", "addstep", "editstep"):
        lines += ["", STEP_LINES]
    return "\n".join(lines)
