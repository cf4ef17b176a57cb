"""Command-line flags of run.py and their conversion into frozen configs."""

from flags import definitions  # noqa: F401  (registers the absl flags)
from flags.config import (ConfigError, DataConfig, DistributeConfig,  # noqa: F401
                          ModelConfig, OptimConfig, RunConfig, TrainConfig,
                          config_from_values, effective_values)
