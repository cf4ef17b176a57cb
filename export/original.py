"""`python -m export --model_dir=ORIGINAL_MODEL_DIR --export_dir=OUT` for the original code's models.

Rebuilds the model from the original checkpoint (architecture inferred from
its variables and flat flags.json; see simclr_tf2/original), then writes our
SavedModel (CONTRACT.md section 4): serving signatures, hub API, gradients
with trainable=True. Its outputs equal the original SavedModel's.
"""

import os
from export import saved_model
from simclr_tf2.config import DataConfig, OptimConfig, RunConfig
from simclr_tf2.original import convert, loader

GLOBAL_STEP_KEY = "global_step/.ATTRIBUTES/VARIABLE_VALUE"


def is_original_source(model_dir, checkpoint=None):
    """Whether the export source was written by the original SimCLR TF2 code."""
    return loader.is_original(checkpoint or model_dir)


def _global_step(original):
    reader = original.graph.reader
    if reader.has_tensor(GLOBAL_STEP_KEY):
        return int(reader.get_tensor(GLOBAL_STEP_KEY))
    step = os.path.basename(os.path.dirname(original.prefix.rstrip("/")))
    tail = os.path.basename(original.prefix).rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else int(step) if step.isdigit() else 0


def export_original(source, export_dir, *, include_projection_head=True,
                    include_supervised_head=True, overwrite=False, **save_options):
    """Converts an original model_dir / ckpt-N prefix / SavedModel into our SavedModel.

    Args:
      source: what --checkpoint (or else --model_dir) names.
      export_dir: destination (required: the original's own saved_model/
        directory is left alone).
      include_projection_head, include_supervised_head, overwrite,
      **save_options: as `saved_model.export_model`.

    Returns:
      (export directory, global step, checkpoint prefix read).
    """
    if not export_dir:
        raise loader.OriginalCheckpointError(
            f"{source} was written by the original SimCLR code; pass --export_dir=OUT "
            "(its own saved_model/ directory is not overwritten).")
    saved_model.preflight.check_destination(export_dir, overwrite)
    with saved_model.float32_policy():
        model, original, cfg, size = convert.model_from_original(source)
    config = RunConfig(
        data=DataConfig(image_size=size), model=cfg,
        optim=OptimConfig(weight_decay=float(original.flags.get("weight_decay", 0.0))))
    step = _global_step(original)
    out = saved_model.export_model(
        model, config, export_dir, include_projection_head=include_projection_head,
        include_supervised_head=include_supervised_head, overwrite=overwrite,
        info={"global_step": step, "checkpoint": original.prefix,
              "original_simclr": True, "architecture": original.arch}, **save_options)
    return out, step, original.prefix
