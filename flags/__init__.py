"""Command-line flags of run.py and their conversion into a RunConfig."""

from flags import definitions  # noqa: F401  (registers the absl flags)
from flags.config import config_from_values, effective_values  # noqa: F401
