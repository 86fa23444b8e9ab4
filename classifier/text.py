"""Tweet normalisation shared by training and inference."""

import html
import re
import unicodedata

_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION_RE = re.compile(r"@\w{1,50}")
_SPACE_RE = re.compile(r"\s+")


def normalise(text):
    """Return the form of ``text`` that the model sees.

    HTML entities are decoded, URLs become ``http`` and user mentions
    ``@user`` (neither carries meaning the model can learn from), and
    invisible format characters such as zero-width spaces are dropped, so
    that they cannot split words into unseen pieces.
    """
    text = html.unescape(text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = _URL_RE.sub("http", text)
    text = _MENTION_RE.sub("@user", text)
    return _SPACE_RE.sub(" ", text).strip()
