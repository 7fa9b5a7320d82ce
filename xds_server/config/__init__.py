"""Config model: the tenant spec every layer is compiled from."""

from xds_server.config.errors import ConfigError, Problem
from xds_server.config.loader import load_config
from xds_server.config.model import PlatformConfig

__all__ = ["ConfigError", "PlatformConfig", "Problem", "load_config"]
