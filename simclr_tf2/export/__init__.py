"""SavedModel / TF-Hub export of SimCLR models (also `simclr-export`).

    from simclr_tf2.export import saved_model
    saved_model.export_to_model_dir(model, config, global_step, keep=1)

Modules: `module` (the hub-style tf.Module and serving signatures),
`saved_model` (the export copy, atomic writing, model_dir exports),
`single_replica_bn` (global BN without the all-reduce), `from_checkpoint`
(rebuilding a model from flags.json + checkpoint), `original` (models of
the original SimCLR TF2 code), `preflight` (checks without TensorFlow) and
`command` (exporting a model_dir: `simclr-export`, `python -m
simclr_tf2.export` and the checkout's `python -m export`). This package
imports nothing on import, so a command line can quiet TensorFlow before
it starts.
"""
