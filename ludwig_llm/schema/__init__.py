"""The config schema: one marshmallow-dataclass class per section, registries of pluggable types,
cross-field checks and the loader. Pure and offline: nothing here imports torch or touches the network."""

from ludwig_llm.schema.loader import load_config, read_yaml

__all__ = ["load_config", "read_yaml"]
