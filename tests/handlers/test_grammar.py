"""The admin command grammar: every command, its spellings, and its usage errors."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from handlers import help as help_entries
from handlers.commands import (
    AddStep,
    ArchiveSequence,
    CloneSequence,
    Command,
    Describe,
    EditStep,
    Enroll,
    EnrollLine,
    Export,
    Help,
    ListOptOuts,
    ListSequences,
    NewSequence,
    OptOut,
    PauseContact,
    PauseSending,
    PauseSequence,
    Preview,
    RemoveStep,
    ResumeContact,
    ResumeSending,
    ResumeSequence,
    SendTest,
    SetKeyword,
    SetStopOnReply,
    SetWindow,
    ShowContact,
    ShowQueue,
    ShowSequence,
    ShowStats,
    Unenroll,
)
from handlers.grammar import COMMAND_NAMES, UsageError, parse
from handlers.help import ENTRIES, HELP_TEXT, details, usage
from scheduler.steps import StepSpec, TemplateRef, Timing

HI = StepSpec(Timing(day=1), "text", body="Hi")
PHONE = "+15551234567"

HAPPY: list[tuple[str, Command]] = [
    ("/help", Help()),
    ("/help enroll", Help("enroll")),
    ("/help /Enroll", Help("enroll")),
    ("/help pause sending", Help("pause sending")),
    ("/start", Help()),
    ("/start some-deep-link-payload", Help()),
    ("/newsequence Tips", NewSequence("Tips")),
    ("/newsequence Spring   promo", NewSequence("Spring promo")),
    ('/newsequence "Spring promo"', NewSequence("Spring promo")),
    (
        "/newsequence Tips\n"
        "  Day 1: Hi\n"
        "\n"
        "  Day 3 at 10:00: image https://example.com/tip.jpg | Here's a quick tip, {name}\n"
        "  Day 7: template welcome_week en {first_name|there}\n"
        "  after 2h: Did you get a chance to look?\n",
        NewSequence(
            "Tips",
            (
                HI,
                StepSpec(
                    Timing(day=3, at=time(10)),
                    "media",
                    body="Here's a quick tip, {name}",
                    media_url="https://example.com/tip.jpg",
                    media_type="image",
                ),
                StepSpec(
                    Timing(day=7),
                    "template",
                    template=TemplateRef("welcome_week", "en", ("{first_name|there}",)),
                ),
                StepSpec(
                    Timing(after=timedelta(hours=2)),
                    "text",
                    body="Did you get a chance to look?",
                ),
            ),
        ),
    ),
    ("/addstep tips Day 1: Hi", AddStep("tips", HI)),
    ('/addstep "Spring promo" Day 1: Hi', AddStep("Spring promo", HI)),
    ("/addstep tips\nDay 1: Hi", AddStep("tips", HI)),
    (
        "/addstep tips Day 1: He said \"hi, it's me",
        AddStep("tips", StepSpec(Timing(day=1), "text", body="He said \"hi, it's me")),
    ),
    (
        "/addstep tips Day 1: Hello\nSecond paragraph",
        AddStep("tips", StepSpec(Timing(day=1), "text", body="Hello\nSecond paragraph")),
    ),
    (
        "/addstep tips Day 2: Hi || template nudge en_US {first_name|there}",
        AddStep(
            "tips",
            StepSpec(
                Timing(day=2),
                "text",
                body="Hi",
                fallback=TemplateRef("nudge", "en_US", ("{first_name|there}",)),
            ),
        ),
    ),
    ("/editstep tips 2 Day 1: Hi", EditStep("tips", 2, HI)),
    ("/editstep 'Spring promo' 12\nDay 1: Hi", EditStep("Spring promo", 12, HI)),
    ("/removestep tips 3", RemoveStep("tips", 3)),
    ("/removestep Spring promo 3", RemoveStep("Spring promo", 3)),
    ("/sequences", ListSequences()),
    ("/sequence tips", ShowSequence("tips")),
    ("/sequence Spring promo", ShowSequence("Spring promo")),
    ("/pause tips", PauseSequence("tips")),
    ("/pause sending", PauseSending()),
    ("/pause SENDING", PauseSending()),
    ('/pause "sending"', PauseSequence("sending")),
    ("/pause sending now", PauseSequence("sending now")),
    ("/resume tips", ResumeSequence("tips")),
    ("/resume sending", ResumeSending()),
    ("/resume 'sending'", ResumeSequence("sending")),
    ("/archive Spring promo", ArchiveSequence("Spring promo")),
    ("/clone tips Tips v2", CloneSequence("tips", "Tips v2")),
    ('/clone "Spring promo" "Summer promo"', CloneSequence("Spring promo", "Summer promo")),
    ("/enroll tips +15551234567", Enroll("tips", (EnrollLine(1, PHONE, None),))),
    (
        "/enroll tips +44 7700 900123 Ana Lima",
        Enroll("tips", (EnrollLine(1, "+44 7700 900123", "Ana Lima"),)),
    ),
    (
        '/enroll "Spring promo" +15551234567 "Ana Lima" --force',
        Enroll("Spring promo", (EnrollLine(1, PHONE, "Ana Lima"),), force=True),
    ),
    ("/enroll tips —force +15551234567", Enroll("tips", (EnrollLine(1, PHONE, None),), force=True)),
    (
        "/enroll tips\n+15551234567 Ana\n\n(555) 123-4567, Lima, Ana\n"
        "+1 555 987 6543;Bo\n07700 900123",
        Enroll(
            "tips",
            (
                EnrollLine(2, PHONE, "Ana"),
                EnrollLine(4, "(555) 123-4567", "Lima, Ana"),
                EnrollLine(5, "+1 555 987 6543", "Bo"),
                EnrollLine(6, "07700 900123", None),
            ),
        ),
    ),
    (
        "/enroll tips +15551234567 O'Brien\nnot-a-number Bob",
        Enroll("tips", (EnrollLine(1, PHONE, "O'Brien"), EnrollLine(2, "not-a-number", "Bob"))),
    ),
    ("/enroll tips", Enroll("tips")),
    ("/enroll tips leads.csv", Enroll("tips", csv_path="leads.csv")),
    ('/enroll tips "My Leads.CSV" --force', Enroll("tips", csv_path="My Leads.CSV", force=True)),
    ("/unenroll tips +1 555 123 4567", Unenroll("tips", "+1 555 123 4567")),
    ("/pausecontact +15551234567", PauseContact(PHONE)),
    ("/resumecontact +15551234567", ResumeContact(PHONE)),
    ("/contact +44 7700 900123", ShowContact("+44 7700 900123")),
    ("/optout +15551234567", OptOut(PHONE)),
    ("/optouts", ListOptOuts()),
    ("/preview tips", Preview("tips")),
    ("/preview Spring promo", Preview("Spring promo")),
    ("/preview tips +15551234567", Preview("tips", PHONE)),
    ("/test tips +15551234567", SendTest("tips", PHONE)),
    ("/queue", ShowQueue()),
    ("/stats", ShowStats()),
    ("/stats Spring promo", ShowStats("Spring promo")),
    ("/export tips", Export("tips")),
    ("/setkeyword tips join   tips", SetKeyword("tips", "JOIN TIPS")),
    ("/setkeyword tips off", SetKeyword("tips", None)),
    ("/setkeyword tips OFF", SetKeyword("tips", None)),
    ('/setkeyword tips "off"', SetKeyword("tips", "OFF")),
    ("/setwindow tips 8:00-20:00", SetWindow("tips", "08:00-20:00")),
    ("/setwindow Spring promo 22:00-06:00", SetWindow("Spring promo", "22:00-06:00")),
    ("/setwindow tips always", SetWindow("tips", "always")),
    ("/setwindow tips Default", SetWindow("tips", None)),
    ("/stoponreply tips on", SetStopOnReply("tips", True)),
    ("/stoponreply Spring promo OFF", SetStopOnReply("Spring promo", False)),
    ("/describe tips Weekly tips", Describe("tips", "Weekly tips")),
    ("/describe tips Line one\nLine two", Describe("tips", "Line one\nLine two")),
    ("/describe tips It's \"free", Describe("tips", "It's \"free")),
]


@pytest.mark.parametrize(("text", "expected"), HAPPY)
def test_commands(text: str, expected: Command) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("/enroll@DripBot tips +15551234567", 1),
        ("/ENROLL tips +15551234567", 1),
        ("/Enroll@dripbot   tips   +15551234567  ", 1),
        ("   \n/enroll tips +15551234567\n  ", 1),
        ("enroll tips +15551234567", 1),
        ("/enroll tips\r\n+15551234567", 2),
    ],
)
def test_spelling_of_the_command_word(text: str, line: int) -> None:
    assert parse(text) == Enroll("tips", (EnrollLine(line, PHONE, None),))


def test_enroll_keeps_the_line_numbers_of_the_message() -> None:
    command = parse("/enroll tips +15551234567\n\n+447700900123 Ben")
    assert isinstance(command, Enroll)
    assert [entry.line for entry in command.entries] == [1, 3]


ERRORS: list[tuple[str, str, str]] = [
    # text, what the message must say, the command whose usage comes with it
    ("", "empty command", "/help"),
    ("/", "empty command", "/help"),
    ("/enrol tips +15551234567", "unknown command /enrol; did you mean /enroll?", "/enroll"),
    ("/sequnces", "did you mean /sequences?", "/sequences"),
    ("/frobnicate", "unknown command /frobnicate; send /help", "/help"),
    ("/help frobnicate", "there is no command /frobnicate", "/help"),
    ("/help enrol", "did you mean /help enroll?", "/help"),
    ("/newsequence", "/newsequence needs a sequence name", "/newsequence"),
    ("/newsequence Day 1: Hi", "looks like a step; put the name on the first line", "/newsequence"),
    ("/newsequence " + "n" * 201, "201 characters; at most 200", "/newsequence"),
    (
        "/newsequence Tips\nDay 1: Hi\nDya 3: hi",
        "line 3: 'Dya 3: hi' — expected 'Day N', 'Day N at HH:MM' or 'after <duration>' before ':'",
        "/newsequence",
    ),
    ("/newsequence Tips\n\nDay 1: hi\nDay 0: x", "line 4: 'Day 0: x' — there is no Day 0", "/new"),
    ("/addstep", "/addstep needs a sequence name, then a step line", "/addstep"),
    ("/addstep tips", "/addstep needs a step line after the sequence name", "/addstep"),
    ("/addstep tips Day 3 at 25:00: x", "step 'Day 3 at 25:00: x': '25:00' is not a time", "/add"),
    ("/addstep tips Day three: x", "'three' is not a day number", "/addstep"),
    ("/addstep tips Day -1: x", "there is no Day -1", "/addstep"),
    ("/addstep tips after 5y: x", "'after 5y': expected a duration like", "/addstep"),
    ("/addstep tips Day 1: image", "the image step has no URL", "/addstep"),
    ("/addstep tips Day 1: image www.example.com/a.jpg", "is not an http:// or https://", "/add"),
    ("/addstep tips Day 1: audio https://e.com/a.mp3 | hi", "audio messages have no caption", "/a"),
    ("/addstep tips Day 1: template welcome", "'welcome' needs a language code", "/addstep"),
    ("/addstep tips Day 1: Hi\nDay 2: Ho", "one step per /addstep; 'Day 2: Ho' looks like", "/add"),
    ('/addstep "Spring promo Day 1: Hi', "unbalanced quotes", "/addstep"),
    ("/editstep tips", "needs a sequence name, then a step number and a step line", "/editstep"),
    ("/editstep tips two Day 1: Hi", "'two' is not a step number", "/editstep"),
    ("/editstep tips 0 Day 1: Hi", "'0' is not a step number", "/editstep"),
    ("/editstep tips 2", "/editstep needs a step line", "/editstep"),
    ("/removestep tips", "/removestep needs a sequence name, then a step number", "/removestep"),
    ("/removestep tips -1", "'-1' is not a step number", "/removestep"),
    ("/sequences all", "/sequences takes no arguments; got 'all'", "/sequences"),
    ("/sequence", "/sequence needs a sequence name", "/sequence"),
    ("/sequence tips\nmore", "/sequence takes one line; line 2 ('more') is extra", "/sequence"),
    ('/sequence ""', "/sequence needs a sequence name", "/sequence"),
    ("/pause", "/pause needs a sequence name", "/pause"),
    ("/resume", "/resume needs a sequence name", "/resume"),
    ('/pause "Spring promo', "unbalanced quotes", "/pause"),
    ("/archive", "/archive needs a sequence name", "/archive"),
    ("/clone tips", "/clone needs a sequence name, then a new name", "/clone"),
    ("/enroll", "/enroll needs a sequence name", "/enroll"),
    ("/enroll --force", "/enroll needs a sequence name", "/enroll"),
    ("/enroll tips\n+15551234567\n, Ana", "line 3: ', Ana' has no phone number", "/enroll"),
    ("/enroll tips leads.csv\n+15551234567", "either a CSV file or numbers, not both", "/enroll"),
    ("/unenroll tips", "/unenroll needs a sequence name, then a phone number", "/unenroll"),
    ("/pausecontact", "/pausecontact needs a phone number", "/pausecontact"),
    ("/resumecontact", "/resumecontact needs a phone number", "/resumecontact"),
    ("/contact", "/contact needs a phone number", "/contact"),
    ("/optout", "/optout needs a phone number", "/optout"),
    ("/optouts +15551234567", "/optouts takes no arguments", "/optouts"),
    ("/preview", "/preview needs a sequence name", "/preview"),
    ("/test tips", "/test needs a sequence name, then a phone number", "/test"),
    ("/queue now", "/queue takes no arguments", "/queue"),
    ("/export", "/export needs a sequence name", "/export"),
    ("/setkeyword tips", "/setkeyword needs a sequence name, then a keyword", "/setkeyword"),
    ("/setkeyword tips Stop all", "'STOP ALL' is reserved for opting out", "/setkeyword"),
    ("/setkeyword tips start", "'START' is reserved", "/setkeyword"),
    ("/setkeyword tips /join", "a keyword cannot start with '/'", "/setkeyword"),
    ("/setkeyword tips " + "K" * 101, "101 characters; at most 100", "/setkeyword"),
    ("/setwindow tips", "/setwindow needs a sequence name, then a window", "/setwindow"),
    ("/setwindow tips 25:00-06:00", "'25:00-06:00' is not a send window", "/setwindow"),
    ("/setwindow tips 09:00-09:00", "is not a send window: an empty send window", "/setwindow"),
    ("/setwindow tips sometimes", "'sometimes' is not a send window", "/setwindow"),
    ("/stoponreply tips", "/stoponreply needs a sequence name, then on or off", "/stoponreply"),
    ("/stoponreply tips maybe", "expected on or off after the sequence name, got 'maybe'", "/s"),
    ("/describe tips", "/describe needs a sequence name, then the description", "/describe"),
]


@pytest.mark.parametrize(("text", "complaint", "usage_start"), ERRORS)
def test_usage_errors_say_what_is_wrong(text: str, complaint: str, usage_start: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text)
    assert complaint in caught.value.message
    assert str(caught.value) == caught.value.message
    assert caught.value.usage.startswith(usage_start)
    assert "e.g. /" in caught.value.usage
    assert isinstance(caught.value, ValueError)


def test_every_bad_line_of_a_definition_is_named() -> None:
    text = "/newsequence Tips\nDay 1: fine\nDay 0: a\nDay 2: fine\nafter 5y: b\nDay 3 at 25:00: c"
    with pytest.raises(UsageError) as caught:
        parse(text)
    message = caught.value.message
    assert [line.split(":")[0] for line in message.splitlines()] == ["line 3", "line 5", "line 6"]
    assert "'after 5y': expected a duration like 30s, 30m, 2h or 5d" in message
    assert "'25:00' is not a time of day" in message


# --- /help and the grammar agree ---------------------------------------------------------


def test_help_names_every_command() -> None:
    for name in COMMAND_NAMES:
        assert f"/{name}" in HELP_TEXT, name
    assert {entry.name for entry in ENTRIES} == (set(COMMAND_NAMES) - {"start"}) | {
        "pause sending",
        "resume sending",
    }


@pytest.mark.parametrize(
    "example", [example for entry in ENTRIES for example in entry.examples], ids=repr
)
def test_every_help_example_parses(example: str) -> None:
    command = parse(example)
    assert type(command).command in {entry.name for entry in ENTRIES}


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda entry: entry.name)
def test_each_entry_is_shown_with_an_example(entry: help_entries.CommandHelp) -> None:
    first = entry.examples[0].replace("\n", "\n   ")
    assert entry.usage in HELP_TEXT
    assert first in HELP_TEXT or first == entry.usage
    assert type(parse(entry.examples[0])).command == entry.name
    assert usage(entry.name).startswith(entry.usage)
    assert entry.usage in details(entry.name)
    for example in entry.examples:
        assert example in details(entry.name)


def test_help_fits_in_one_chat_message() -> None:
    assert len(HELP_TEXT) <= 4096


def test_help_explains_step_lines_and_force() -> None:
    for phrase in ("Day N at HH:MM", "after 30s|30m|2h|5d", "|| template", "header=image:<url>"):
        assert phrase in HELP_TEXT
    assert "--force" in HELP_TEXT
    assert "--force" in details("enroll")


@pytest.mark.parametrize("name", ["enroll", "/Enroll", "pause sending", "start"])
def test_usage_lookup(name: str) -> None:
    assert usage(name).startswith("/")


def test_usage_of_an_unknown_command() -> None:
    with pytest.raises(KeyError):
        usage("frobnicate")
