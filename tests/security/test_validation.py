"""Input rules: the table of bad inputs, real tweets, and poisoning flags."""

import csv

import pytest
from sqlalchemy import select

from app.jobs.schemas import SubmitSchema
from security import validation
from storage.db import session
from storage.models import Job
from storage.models import SecurityEvent
from tests.conftest import HUMAID_DIR

TWEET = "Flood water rising near the school, 30 children need evacuation"

# (case, body, field named in the 422)
REFUSED = [
    ("script tag", {"text": "help <script>alert(1)</script> now"}, "text"),
    ("script tag, no close", {"text": "flood <SCRIPT src=//x.js> here"}, "text"),
    ("script tag split by newline", {"text": "flood <\nscript>x</script>"}, "text"),
    ("javascript: URL", {"text": "see javascript:alert(document.cookie)"}, "text"),
    ("JavaScript : URL, spaced", {"text": "go to JavaScript :void(0) now"}, "text"),
    ("vbscript: URL", {"text": "click vbscript:msgbox(1) for help"}, "text"),
    (
        "base64 data: URL",
        {"text": "map at data:text/html;base64,PHNjcmlwdD4= see"},
        "text",
    ),
    (
        "base64 data: URL with charset",
        {"text": "x data:text/html;charset=utf-8;base64,PGI+ y"},
        "text",
    ),
    ("inline handler", {"text": 'photo <img src=x onerror="alert(1)"> here'}, "text"),
    ("inline handler, svg", {"text": "<svg/onload=alert(1)> flood"}, "text"),
    ("101 repeats", {"text": "help" + "!" * 101}, "text"),
    ("101 repeated letters", {"text": "a" * 101 + " flood"}, "text"),
    ("too short", {"text": "ok"}, "text"),
    ("too long", {"text": "flood " * 1667}, "text"),
    ("invisible only", {"text": "\u200b\ufeff\u2060 \u200d"}, "text"),
    ("lone surrogate", {"text": "help \ud83d us"}, "text"),
    ("source with space", {"text": TWEET, "source": "sms gateway"}, "source"),
    ("source with dot", {"text": TWEET, "source": "app.v2"}, "source"),
    ("source SQL", {"text": TWEET, "source": "x'; DROP TABLE jobs;--"}, "source"),
    ("source non-ASCII", {"text": TWEET, "source": "sms\u00e9"}, "source"),
    ("source 51 chars", {"text": TWEET, "source": "s" * 51}, "source"),
    ("source empty", {"text": TWEET, "source": "  "}, "source"),
    ("location with <", {"text": TWEET, "location": "Houston <b>TX</b>"}, "location"),
    ("location with ;", {"text": TWEET, "location": "Houston; TX"}, "location"),
    ("location newline", {"text": TWEET, "location": "Houston\nTX"}, "location"),
    ("location 201 chars", {"text": TWEET, "location": "a" * 201}, "location"),
    ("location emoji", {"text": TWEET, "location": "Houston \U0001f30a"}, "location"),
    ("unknown field", {"text": TWEET, "priority": "high"}, "priority"),
    ("text not a string", {"text": ["flood"]}, "text"),
    ("source not a string", {"text": TWEET, "source": 7}, "source"),
]

ACCEPTED = [
    ("data: followed by words", {"text": "data: 5 injured, 2 missing"}),
    ("the word onion=", {"text": "onion=5kg needed at camp, donation=welcome"}),
    ("javascript mention", {"text": "site down, javascript errors, call 911"}),
    ("100 repeats", {"text": "help" + "!" * 100}),
    ("spaces do not count as repeats", {"text": "help" + " " * 300 + "please"}),
    ("<3 and <b without tag", {"text": "stay safe <3 temps <5C tonight"}),
    ("source with _ and -", {"text": TWEET, "source": "sms_gw-2"}),
    ("location non-ASCII", {"text": TWEET, "location": "São Paulo, Brasil"}),
    ("location decomposed", {"text": TWEET, "location": "Sa\u0303o Paulo"}),
    ("location Devanagari", {"text": TWEET, "location": "मुंबई"}),
    ("location apostrophe", {"text": TWEET, "location": "St. John's, Port-au-Prince"}),
    ("location 200 chars", {"text": TWEET, "location": "a" * 200}),
    ("null source", {"text": TWEET, "source": None, "location": None}),
]


@pytest.mark.parametrize(
    ("case", "body", "field"), REFUSED, ids=[row[0] for row in REFUSED]
)
def test_bad_input_is_422_naming_the_field(client, make_key, case, body, field):
    """Each bad body is a 422 whose fields name the offending field; no job."""
    response = client.post("/v1/classifications", json=body, headers=make_key.headers())

    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "validation_failed"
    assert list(error["fields"]) == [field]
    assert session.scalars(select(Job)).all() == []


@pytest.mark.parametrize(("case", "body"), ACCEPTED, ids=[row[0] for row in ACCEPTED])
def test_good_input_is_accepted(client, make_key, case, body):
    """Text and fields that look odd but are real pass."""
    response = client.post("/v1/emergency", json=body, headers=make_key.headers())

    assert response.status_code == 202, response.get_data(as_text=True)


def test_script_attempt_is_a_security_event(client, make_key):
    """A refused markup attempt is recorded, without the text itself."""
    client.post(
        "/v1/classifications",
        json={"text": "x <script>steal()</script>"},
        headers=make_key.headers(),
    )

    (event,) = session.scalars(
        select(SecurityEvent).where(SecurityEvent.kind == "suspicious_input")
    ).all()
    assert event.details == {"refused": True, "rules": ["script tag"]}
    assert event.key_prefix and event.client_address == "127.0.0.1"
    assert "steal" not in str(event.details)


def _humaid_texts():
    with open(HUMAID_DIR / "test.tsv", newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows)
        column = header.index("tweet_text")
        return [row[column] for row in rows]


def test_no_humaid_test_tweet_is_refused_or_flagged(app):
    """All 12,941 real tweets pass the submit schema; none is flagged."""
    texts = _humaid_texts()
    schema = SubmitSchema()
    refused = {}
    flagged = {}

    with app.app_context():
        for n, text in enumerate(texts):
            errors = schema.validate({"text": text, "source": "humaid"})
            if errors:
                refused[n] = errors
            flags = validation.poisoning_flags(text)
            if flags:
                flagged[n] = flags

    assert len(texts) == 12_941
    assert refused == {}
    assert flagged == {}
    assert any("data:" in text for text in texts)


@pytest.mark.parametrize(
    ("text", "flags"),
    [
        ("bo\u200bmb threat at the station", ["zero_width"]),
        ("flood \u200b\u200b\u200b\u200b\u200b here", ["zero_width"]),
        ("help\ufeff us at the bridge", ["zero_width"]),
        ("flooding" + "!" * 60, ["long_repetition"]),
        ("storm " + "\u0300" * 25 + " coming", ["unusual_unicode_run"]),
        ("fire " + "\ue000" * 20, ["unusual_unicode_run"]),
        ("family of 4 \U0001f468\u200d\U0001f469\u200d\U0001f467 needs help", []),
        ("\ufeffroad closed by landslide", []),
        (TWEET, []),
    ],
)
def test_poisoning_flags(text, flags):
    """Zero-width tricks, long repetitions and unusual runs are flagged."""
    assert validation.poisoning_flags(text) == flags


def test_flagged_text_is_kept_flagged_on_the_job_and_as_an_event(client, make_key):
    """A suspicious but valid text is queued, with its flags on the job and an event."""
    response = client.post(
        "/v1/classifications",
        json={"text": "need wa\u200bter " + "?" * 70},
        headers=make_key.headers(),
    )

    assert response.status_code == 202
    job = session.get(Job, response.get_json()["id"])
    assert job.input_flags == ["zero_width", "long_repetition"]
    (event,) = session.scalars(
        select(SecurityEvent).where(SecurityEvent.kind == "suspicious_input")
    ).all()
    assert event.details == {
        "refused": False,
        "flags": ["zero_width", "long_repetition"],
        "job_id": job.id,
    }
    assert "input_flags" not in response.get_json()
