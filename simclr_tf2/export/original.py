"""`python -m export --model_dir=ORIGINAL_MODEL_DIR --export_dir=OUT` for the original code's models.

The model is rebuilt from the original checkpoint by simclr_tf2/original
(`convert.model_for_export`: architecture inferred from its variables and
flat flags.json); this module writes it as our SavedModel
(docs/serving.md): serving signatures, hub API, gradients with trainable=True. Its
outputs equal the original SavedModel's.
"""

from simclr_tf2.errors import OriginalCheckpointError
from simclr_tf2.export import preflight
from simclr_tf2.export import saved_model
from simclr_tf2.original import convert, loader


def is_original_source(model_dir, checkpoint=None):
    """Whether the export source was written by the original SimCLR TF2 code."""
    return loader.is_original(checkpoint or model_dir)


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
        raise OriginalCheckpointError(
            f"{source} was written by the original SimCLR code; pass --export_dir=OUT "
            "(its own saved_model/ directory is not overwritten).")
    preflight.check_destination(export_dir, overwrite)
    with saved_model.float32_policy():
        model, config, step, info = convert.model_for_export(source)
    out = saved_model.export_model(
        model, config, export_dir, include_projection_head=include_projection_head,
        include_supervised_head=include_supervised_head, overwrite=overwrite,
        info=info, **save_options)
    return out, step, info["checkpoint"]
