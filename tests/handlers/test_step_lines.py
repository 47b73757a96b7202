"""Step lines as admins type them, and every way of getting one wrong."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from handlers.step_lines import LineError, Word, parse_step_line, split_words
from scheduler.steps import StepSpec, TemplateRef, Timing

TEMPLATE = TemplateRef("welcome_week", "en", ("{first_name|there}",))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Day 1: Hi!", StepSpec(Timing(day=1), "text", body="Hi!")),
        ("day 3:Hi", StepSpec(Timing(day=3), "text", body="Hi")),
        ("DAY 2 : Hi", StepSpec(Timing(day=2), "text", body="Hi")),
        ("Day3: Hi", StepSpec(Timing(day=3), "text", body="Hi")),
        ("  Day 7 at 9:05: Hi  ", StepSpec(Timing(day=7, at=time(9, 5)), "text", body="Hi")),
        ("Day 3 AT 10:00: Hi", StepSpec(Timing(day=3, at=time(10)), "text", body="Hi")),
        ("Day 1 at 23:59:Late", StepSpec(Timing(day=1, at=time(23, 59)), "text", body="Late")),
        ("after 30s: a", StepSpec(Timing(after=timedelta(seconds=30)), "text", body="a")),
        ("after 30m: a", StepSpec(Timing(after=timedelta(minutes=30)), "text", body="a")),
        ("After 2H: a", StepSpec(Timing(after=timedelta(hours=2)), "text", body="a")),
        ("after 5 d: a", StepSpec(Timing(after=timedelta(days=5)), "text", body="a")),
        ("after 0s: now", StepSpec(Timing(after=timedelta(0)), "text", body="now")),
    ],
)
def test_timings(line: str, expected: StepSpec) -> None:
    assert parse_step_line(line) == expected


@pytest.mark.parametrize(
    ("message", "body"),
    [
        ("Hi {first_name|there}! Welcome aboard.", "Hi {first_name|there}! Welcome aboard."),
        ("Meet us at 10:30: bring a friend", "Meet us at 10:30: bring a friend"),
        ("Don't forget: it's 'free'", "Don't forget: it's 'free'"),
        ('He said "hi', 'He said "hi'),
        ("Video calls are open today!", "Video calls are open today!"),
        ("Template messages are approved by Meta", "Template messages are approved by Meta"),
        ("Price: 5 | 10 || 20", "Price: 5 | 10 || 20"),
        ("x" * 4096, "x" * 4096),
    ],
)
def test_text_steps_keep_the_message_as_typed(message: str, body: str) -> None:
    assert parse_step_line(f"Day 2: {message}") == StepSpec(Timing(day=2), "text", body=body)


def test_a_step_may_span_lines_when_added_alone() -> None:
    spec = parse_step_line("Day 2: Hello\nSecond paragraph")
    assert spec.body == "Hello\nSecond paragraph"


@pytest.mark.parametrize(
    ("message", "media_type", "url", "caption"),
    [
        ("image https://example.com/tip.jpg | A tip, {name}", "image", None, "A tip, {name}"),
        ("video https://example.com/tip.jpg|A tip", "video", None, "A tip"),
        ("document https://example.com/tip.jpg", "document", None, ""),
        ("document https://example.com/tip.jpg |", "document", None, ""),
        ("audio http://example.com/a.mp3", "audio", "http://example.com/a.mp3", ""),
        ("Image https://example.com/tip.jpg | a | b", "image", None, "a | b"),
        ("image https://example.com/tip.jpg | x" + "y" * 1023, "image", None, "x" + "y" * 1023),
    ],
)
def test_media_steps(message: str, media_type: str, url: str | None, caption: str) -> None:
    spec = parse_step_line(f"Day 3 at 10:00: {message}")
    assert spec.kind == "media"
    assert spec.media_type == media_type
    assert spec.media_url == (url or "https://example.com/tip.jpg")
    assert spec.body == caption
    assert spec.timing == Timing(day=3, at=time(10))


@pytest.mark.parametrize(
    ("message", "template"),
    [
        ("template welcome_week en {first_name|there}", TEMPLATE),
        ("template welcome_week en", TemplateRef("welcome_week", "en")),
        ("template promo2 en_US a b", TemplateRef("promo2", "en_US", ("a", "b"))),
        ("template promo pt-br x", TemplateRef("promo", "pt_BR", ("x",))),
        ("template promo EN_us x", TemplateRef("promo", "en_US", ("x",))),
        ("template promo es_419 x", TemplateRef("promo", "es_419", ("x",))),
        ("template promo fil x", TemplateRef("promo", "fil", ("x",))),
        (
            """template promo en "20% off" 'Spring sale' “Ana Lima” Don't""",
            TemplateRef("promo", "en", ("20% off", "Spring sale", "Ana Lima", "Don't")),
        ),
        (
            "template offer en header=image:https://example.com/o.jpg {first_name|there} 5",
            TemplateRef(
                "offer", "en", ("{first_name|there}", "5"), ("image", "https://example.com/o.jpg")
            ),
        ),
        (
            "template offer en HEADER=Document:https://example.com/o.pdf",
            TemplateRef("offer", "en", (), ("document", "https://example.com/o.pdf")),
        ),
        (
            'template offer en "header=not a header"',
            TemplateRef("offer", "en", ("header=not a header",)),
        ),
    ],
)
def test_template_steps(message: str, template: TemplateRef) -> None:
    assert parse_step_line(f"Day 7: {message}") == StepSpec(
        Timing(day=7), "template", template=template
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Hi {name} || template welcome_week en {first_name|there}",
            StepSpec(Timing(day=4), "text", body="Hi {name}", fallback=TEMPLATE),
        ),
        (
            "Hi||template welcome_week en {first_name|there}",
            StepSpec(Timing(day=4), "text", body="Hi", fallback=TEMPLATE),
        ),
        (
            "image https://example.com/t.jpg | Tip || template welcome_week en {first_name|there}",
            StepSpec(
                Timing(day=4),
                "media",
                body="Tip",
                media_url="https://example.com/t.jpg",
                media_type="image",
                fallback=TEMPLATE,
            ),
        ),
        (
            "Hi || Template offer en header=video:https://example.com/v.mp4",
            StepSpec(
                Timing(day=4),
                "text",
                body="Hi",
                fallback=TemplateRef("offer", "en", (), ("video", "https://example.com/v.mp4")),
            ),
        ),
    ],
)
def test_fallback_templates(message: str, expected: StepSpec) -> None:
    assert parse_step_line(f"Day 4: {message}") == expected


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("Dya 3: hi", "expected 'Day N', 'Day N at HH:MM' or 'after <duration>' before ':'"),
        ("Hello there", "expected 'Day N'"),
        ("Day 3 hello", "missing ':' between the timing and the message"),
        ("Day 3 10:00: hi", "got 'Day 3 10'"),
        ("Day 0: hi", "there is no Day 0; Day 1 is the enrollment day"),
        ("Day -1: hi", "there is no Day -1"),
        ("Day three: hi", "'three' is not a day number"),
        ("Day 1.5: hi", "'1.5' is not a day number"),
        ("Day 99999: hi", "the last day is Day 3650"),
        ("Day 3 at 25:00: hi", "'25:00' is not a time of day"),
        ("Day 3 at 10:60: hi", "'10:60' is not a time of day"),
        ("Day 3 at 9: hi", "'9' is not a time of day"),
        ("Day 3 at noon: hi", "'noon' is not a time of day"),
        ("after 5y: hi", "'after 5y': expected a duration like 30s, 30m, 2h or 5d"),
        ("after two hours: hi", "got 'two hours'"),
        ("after -2h: hi", "got '-2h'"),
        ("after 4000d: hi", "at most 3650 days"),
        ("Day 2:", "the message after ':' is empty"),
        ("Day 2:    ", "the message after ':' is empty"),
        ("Day 2: || template a en", "the message before '|| template' is empty"),
        ("Day 2: " + "x" * 4097, "the text is 4097 characters; WhatsApp allows 4096"),
        ("Day 2: image", "the image step has no URL"),
        ("Day 2: video | caption", "the video step has no URL"),
        (
            "Day 2: image example.com/a.jpg | hi",
            "'example.com/a.jpg' is not an http:// or https://",
        ),
        ("Day 2: document ftp://example.com/a.pdf", "'ftp://example.com/a.pdf' is not an http"),
        ("Day 2: image https:// | hi", "'https://' is not an http"),
        ("Day 2: image https://e.com/a.jpg Here's a tip", "put '|' before the caption"),
        ("Day 2: audio https://e.com/a.mp3 | Listen!", "audio messages have no caption"),
        ("Day 2: image https://e.com/a.jpg | " + "c" * 1025, "caption is 1025 characters"),
        ("Day 2: template", "the template needs a name and a language"),
        ("Day 2: template welcome_week", "'welcome_week' needs a language code"),
        ("Day 2: template Welcome en", "'Welcome' is not a template name"),
        ("Day 2: template welcome-week en", "'welcome-week' is not a template name"),
        ("Day 2: template welcome english", "'english' is not a template language code"),
        ('Day 2: template welcome en "unclosed', "unbalanced quotes"),
        ('Day 2: template welcome en a ""', "parameter 2 of the template 'welcome' is empty"),
        ("Day 2: template welcome en x header=image:https://e.com/a.jpg", "right after"),
        ("Day 2: template welcome en header=audio:https://e.com/a.mp3", "header=image:<url>"),
        ("Day 2: template welcome en header=image", "header=image:<url>"),
        ("Day 2: template welcome en header=image:ftp://e.com/a", "header URL 'ftp://e.com/a'"),
        ("Day 2: template a en || template b en", "a template step needs no fallback"),
        ("Day 2: Hi || template", "the fallback template needs a name and a language"),
        ("Day 2: Hi || template b", "fallback template 'b' needs a language code"),
        ("Day 2: Hi || template b en || template c en", "at most one fallback template"),
    ],
)
def test_bad_step_lines_say_what_is_wrong(line: str, complaint: str) -> None:
    with pytest.raises(LineError) as caught:
        parse_step_line(line)
    assert complaint in str(caught.value)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("a b  c", [("a", False), ("b", False), ("c", False)]),
        ('"Spring promo" x', [("Spring promo", True), ("x", False)]),
        ("'Spring promo' x", [("Spring promo", True), ("x", False)]),
        ("“Spring promo” x", [("Spring promo", True), ("x", False)]),
        ("‘Spring promo’", [("Spring promo", True)]),
        ("Don't O'Brien", [("Don't", False), ("O'Brien", False)]),
        ("'Don't stop' now", [("Don't stop", True), ("now", False)]),
        ('""', [("", True)]),
        ("", []),
    ],
)
def test_split_words(line: str, words: list[tuple[str, bool]]) -> None:
    assert [(word.text, word.quoted) for word in split_words(line)] == words


def test_split_words_stops_at_the_limit_and_keeps_positions() -> None:
    line = 'tips Day 1: He said "hi'
    words = split_words(line, limit=1)
    assert words == [Word("tips", False, 0, 4)]
    assert line[words[0].end :] == ' Day 1: He said "hi'


@pytest.mark.parametrize("line", ['"Spring promo', "x 'abc", "“open"])
def test_unbalanced_quotes(line: str) -> None:
    with pytest.raises(LineError, match="unbalanced quotes"):
        split_words(line)
