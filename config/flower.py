"""Flower settings: bound to loopback, behind basic authentication."""

import config

_settings = config.load()

address = _settings["FLOWER_ADDRESS"]
port = int(_settings["FLOWER_PORT"])
basic_auth = [_settings["FLOWER_BASIC_AUTH"]]
