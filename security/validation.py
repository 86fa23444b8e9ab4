"""Checks on submitted message text that a schema type alone cannot express."""

import unicodedata

EMPTY_TEXT = "text is empty once whitespace and invisible characters are removed"
BAD_SURROGATE = "text contains an unpaired UTF-16 surrogate"


def visible_length(text):
    """Return the length of ``text`` without whitespace and format characters."""
    return sum(
        1
        for ch in text
        if not ch.isspace() and unicodedata.category(ch) not in ("Cf", "Zs")
    )


def text_problems(text, *, min_chars, max_chars):
    """Return the reasons ``text`` is refused (an empty list when it is fine)."""
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        return [BAD_SURROGATE]

    trimmed = text.strip()
    if visible_length(trimmed) == 0:
        return [EMPTY_TEXT]
    if len(trimmed) < min_chars:
        return [f"text must be at least {min_chars} characters"]
    if len(trimmed) > max_chars:
        return [f"text must be at most {max_chars} characters"]
    return []
