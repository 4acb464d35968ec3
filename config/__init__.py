"""Settings of every V Studio part, from flags, environment, a TOML file and defaults."""

from config.settings import (
    BrokerSettings,
    IngestSettings,
    PartSettings,
    ServerSettings,
    config_file_path,
    default_data_dir,
    load_settings,
    setting_sources,
)

__all__ = [
    "BrokerSettings",
    "IngestSettings",
    "PartSettings",
    "ServerSettings",
    "config_file_path",
    "default_data_dir",
    "load_settings",
    "setting_sources",
]
