"""Checks on submitted messages that a schema type alone cannot express.

Two kinds of finding. A *problem* refuses the message (a 422 naming the
field): markup that could run as script where the text is shown, a flood of
one character, a malformed source or location. A *flag* lets the message
through and marks it: signs of a model-poisoning attempt (zero-width tricks,
long repetitions, long runs of unusual Unicode) are recorded on the job and
as a security event, never dropped in silence.

The rules are written so that real crisis text passes: every one of the
12,941 HumAID test tweets is accepted, "data: 5 injured" included (a
``data:`` URL is refused only with a media type and ``;base64,``).
"""

import re
import unicodedata

EMPTY_TEXT = "text is empty once whitespace and invisible characters are removed"
BAD_SURROGATE = "text contains an unpaired UTF-16 surrogate"
MARKUP_TEXT = "text contains markup that could run as script ({rule})"
REPEATED_TEXT = "text repeats one character more than {limit} times in a row"
SOURCE_CHARS = "source may hold only letters A-Z, digits, '_' and '-'"
SOURCE_LENGTH = "source must be 1 to {limit} characters"
LOCATION_CHARS = "location may hold only letters, digits, spaces and , . - '"
LOCATION_LENGTH = "location must be 1 to {limit} characters"

REPETITION_RULE = "repeated character"
SOURCE_MAX_CHARS = 50
LOCATION_MAX_CHARS = 200
# A character may repeat this many times in a row; one more is refused.
MAX_REPEAT = 100
# Flags, not refusals: a character repeated more than this many times, and
# this many unusual characters in a row.
FLAG_REPEAT = 50
FLAG_UNUSUAL_RUN = 20

# Each rule needs the shape that makes it dangerous, not just a keyword:
# "on" followed by "=" counts only inside a tag, "data:" only as a base64
# URL with a media type.
_MARKUP_RULES = (
    ("script tag", re.compile(r"<\s*/?\s*script\b", re.IGNORECASE)),
    ("javascript: URL", re.compile(r"\bjavascript\s*:", re.IGNORECASE)),
    ("vbscript: URL", re.compile(r"\bvbscript\s*:", re.IGNORECASE)),
    (
        "base64 data: URL",
        re.compile(
            r"\bdata:\s*(?:[a-z]+/[\w.+-]+)?(?:;[\w.+-]+(?:=[\w.+-]*)?)*;base64,",
            re.IGNORECASE,
        ),
    ),
    (
        "inline event handler",
        re.compile(r"<[a-z][^>]*?\bon[a-z]+\s*=", re.IGNORECASE | re.DOTALL),
    ),
)
_REPEAT_RE = re.compile(rf"(.)\1{{{MAX_REPEAT},}}", re.DOTALL)
_FLAG_REPEAT_RE = re.compile(rf"(.)\1{{{FLAG_REPEAT},}}", re.DOTALL)
_WHITESPACE_RE = re.compile(r"\s+")
_SOURCE_RE = re.compile(r"[A-Za-z0-9_-]+")
_LOCATION_PUNCTUATION = frozenset(" ,.-'\u2019")
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff\u180e")
# Zero-width joiners are legitimate inside emoji sequences and Indic or
# Persian words, so one alone is not a sign; these are: one splitting two
# ASCII letters ("bo\u200bmb" slips past a keyword filter), a byte-order
# mark anywhere but first, or many of them.
_ZERO_WIDTH_SPLIT_RE = re.compile(r"[A-Za-z][\u200b\u200c\u200d\u2060\ufeff]+[A-Za-z]")
_MANY_ZERO_WIDTH = 5
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_NON_ASCII_RUN_RE = re.compile(r"[^\x00-\x7f]+")


def visible_length(text):
    """Return the length of ``text`` without whitespace and format characters."""
    if text.isascii():
        # No ASCII character is a format character; str.split() drops
        # exactly the characters str.isspace() names, in C.
        return len("".join(text.split()))
    return sum(
        1
        for ch in text
        if not ch.isspace() and unicodedata.category(ch) not in ("Cf", "Zs")
    )


def text_problems(text, *, min_chars, max_chars):
    """Return the reasons ``text`` is refused (an empty list when it is fine)."""
    if _SURROGATE_RE.search(text):
        return [BAD_SURROGATE]

    trimmed = text.strip()
    if visible_length(trimmed) == 0:
        return [EMPTY_TEXT]
    if len(trimmed) < min_chars:
        return [f"text must be at least {min_chars} characters"]
    if len(trimmed) > max_chars:
        return [f"text must be at most {max_chars} characters"]

    return [
        REPEATED_TEXT.format(limit=MAX_REPEAT)
        if rule == REPETITION_RULE
        else MARKUP_TEXT.format(rule=rule)
        for rule in hostile_rules(trimmed)
    ]


def hostile_rules(text):
    """Return the names of the refusing content rules that ``text`` breaks.

    These are the refusals worth a security event (someone tried markup or
    a flood), as opposed to a text that is merely too short or too long.
    """
    if not isinstance(text, str):
        return []

    # Whitespace is collapsed first, so a line break inside a tag does not
    # hide it and runs of spaces do not count as repetition.
    collapsed = _WHITESPACE_RE.sub(" ", text.strip())
    rules = [rule for rule, pattern in _MARKUP_RULES if pattern.search(collapsed)]
    if _REPEAT_RE.search(collapsed):
        rules.append(REPETITION_RULE)
    return rules


def source_problems(value):
    """Return the reasons a ``source`` is refused."""
    value = value.strip()
    if not 1 <= len(value) <= SOURCE_MAX_CHARS:
        return [SOURCE_LENGTH.format(limit=SOURCE_MAX_CHARS)]
    if not _SOURCE_RE.fullmatch(value):
        return [SOURCE_CHARS]
    return []


def _location_char_ok(ch):
    # Letters and digits of any script, with their combining marks
    # ("São Paulo" in either normal form), and a few separators.
    return ch in _LOCATION_PUNCTUATION or unicodedata.category(ch)[0] in "LMN"


def location_problems(value):
    """Return the reasons a ``location`` is refused."""
    value = value.strip()
    if not 1 <= len(value) <= LOCATION_MAX_CHARS:
        return [LOCATION_LENGTH.format(limit=LOCATION_MAX_CHARS)]
    if not all(_location_char_ok(ch) for ch in value):
        return [LOCATION_CHARS]
    return []


def _unusual(ch):
    # Outside ASCII and not a letter, digit, separator or punctuation:
    # symbols, combining marks, format and private-use characters, and
    # unassigned code points. Ordinary text in any script has few in a row.
    return ord(ch) > 0x7F and unicodedata.category(ch)[0] not in "LNZP"


def _longest_unusual_run(text):
    # An ASCII character is never unusual, so only the runs of non-ASCII
    # characters are walked one by one (most tweets have few or none).
    longest = 0
    for segment in _NON_ASCII_RUN_RE.findall(text):
        if len(segment) <= longest:
            continue
        run = 0
        for ch in segment:
            run = run + 1 if _unusual(ch) else 0
            longest = max(longest, run)
    return longest


def poisoning_flags(text):
    """Return the model-poisoning signs in accepted ``text`` (sorted names)."""
    flags = []
    zero_width = sum(text.count(ch) for ch in _ZERO_WIDTH)
    stripped = text.strip()
    if (
        _ZERO_WIDTH_SPLIT_RE.search(text)
        or "\ufeff" in stripped[1:]
        or zero_width >= _MANY_ZERO_WIDTH
    ):
        flags.append("zero_width")
    if _FLAG_REPEAT_RE.search(_WHITESPACE_RE.sub(" ", stripped)):
        flags.append("long_repetition")
    if _longest_unusual_run(text) >= FLAG_UNUSUAL_RUN:
        flags.append("unusual_unicode_run")
    return flags
