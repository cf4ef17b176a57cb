"""SavedModel / TF-Hub export of SimCLR models (also `python -m export`)."""

from export.module import SERVING_BYTES
from export.module import SERVING_DEFAULT
from export.module import SimCLRHubModule
from export.saved_model import export_model
from export.saved_model import export_to_model_dir
from export.saved_model import save_module

__all__ = [
    "SERVING_BYTES",
    "SERVING_DEFAULT",
    "SimCLRHubModule",
    "export_model",
    "export_to_model_dir",
    "save_module",
]
