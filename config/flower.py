"""Flower settings: bound to loopback, behind basic authentication.

Every public name here is read by Flower as an option.
"""

import config as _config

_settings = _config.load()

if (
    _settings["ENV"] == "production"
    and _settings["FLOWER_BASIC_AUTH"] == _config.DefaultConfig.FLOWER_BASIC_AUTH
):
    raise _config.ConfigError(f"{_config.ENV_PREFIX}_FLOWER_BASIC_AUTH must be set")

address = _settings["FLOWER_ADDRESS"]
port = int(_settings["FLOWER_PORT"])
basic_auth = [_settings["FLOWER_BASIC_AUTH"]]
