"""Flower settings: bound to loopback, behind basic authentication.

Every public name here is read by Flower as an option.
"""

from config import load as _load_settings

_settings = _load_settings()

address = _settings["FLOWER_ADDRESS"]
port = int(_settings["FLOWER_PORT"])
basic_auth = [_settings["FLOWER_BASIC_AUTH"]]
