"""Command-line flags of run.py and their conversion into a RunConfig."""

from flags import definitions  # noqa: F401  (registers the absl flags)
from flags.config import (ConfigError, config_from_values,  # noqa: F401
                          effective_values)
from simclr_tf2.config import RunConfig  # noqa: F401
