"""Flower settings: bound to loopback, behind basic authentication.

Every public name here is read by Flower as an option.
"""

from config import load as _load_settings

_settings = _load_settings()

if (
    _settings["ENV"] == "production"
    and _settings["FLOWER_BASIC_AUTH"] == config.DefaultConfig.FLOWER_BASIC_AUTH
):
    raise config.ConfigError(f"{config.ENV_PREFIX}_FLOWER_BASIC_AUTH must be set")

address = _settings["FLOWER_ADDRESS"]
port = int(_settings["FLOWER_PORT"])
basic_auth = [_settings["FLOWER_BASIC_AUTH"]]
