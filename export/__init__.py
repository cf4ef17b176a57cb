"""SavedModel / TF-Hub export of SimCLR models (also `python -m export`).

    from export import saved_model
    saved_model.export_to_model_dir(model, config, global_step, keep=1)

Submodules: `module` (the hub-style tf.Module and serving signatures),
`saved_model` (the export copy, atomic writing, model_dir exports),
`single_replica_bn` (global BN without the all-reduce), `from_checkpoint`
(rebuilding a model from flags.json + checkpoint), `preflight` (checks
without TensorFlow). They are imported on first use, so `python -m export`
can quiet TensorFlow before it starts.
"""

import importlib

_LAZY = {
    "SERVING_BYTES": "module",
    "SERVING_DEFAULT": "module",
    "SimCLRHubModule": "module",
    "export_model": "saved_model",
    "export_to_model_dir": "saved_model",
    "save_module": "saved_model",
    "restore_model": "from_checkpoint",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"export.{_LAZY[name]}"), name)
    if name in ("module", "saved_model", "from_checkpoint", "preflight",
                "single_replica_bn"):
        return importlib.import_module(f"export.{name}")
    raise AttributeError(f"module 'export' has no attribute {name!r}")
