"""Writes SimCLR SavedModels (TF-Hub modules) atomically, and keeps the newest.

    path = export_to_model_dir(model, config, global_step, keep=1)
    # -> model_dir/saved_model/<global_step>/

The export is made from a *copy* of the model, built outside any
distribution strategy: float32, every layer trainable, synchronized BN
computing its moments without the all-reduce (`single_replica_bn`). It
computes bit for bit what the trained model computes, in both BN modes,
with plain ops that differentiate without custom gradients.
"""

import contextlib
import json
import os
import shutil
import tempfile
import uuid

import keras
import tensorflow as tf

from simclr_tf2.export import module as module_lib
from simclr_tf2.export import preflight
from simclr_tf2.export import single_replica_bn
from simclr_tf2 import rundir
from simclr_tf2 import tasks
from simclr_tf2.errors import ExportError
from simclr_tf2.errors import WriteError
from simclr_tf2.errors import io_reason

EXPORT_INFO = rundir.EXPORT_INFO


@contextlib.contextmanager
def float32_policy():
    """Builds layers in float32 whatever the run's mixed-precision policy."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def copy_weights(source, target):
    """Assigns each weight of `target` from the same-path weight of `source`.

    Args:
      source: the trained model.
      target: a model of the same architecture, possibly without some of
        `source`'s parts (an excluded supervised head).

    Returns:
      The paths of `source` weights left unused.

    Raises:
      ValueError: a target weight with no same-path, same-shape source.
    """
    by_path = {v.path: v for v in source.weights}
    missing = [v.path for v in target.weights
               if v.path not in by_path
               or tuple(by_path[v.path].shape) != tuple(v.shape)]
    if missing or len(by_path) != len(source.weights):
        raise ValueError(
            "the export copy does not match the trained model's architecture "
            f"(no source for {missing[:3]}).")
    for v in target.weights:
        v.assign(tf.convert_to_tensor(by_path[v.path].numpy()))
    return sorted(set(by_path) - {v.path for v in target.weights})


def _float32(config):
    """A serialised Keras config with every dtype policy set to float32."""
    if isinstance(config, dict):
        return {k: "float32" if k == "dtype" else _float32(v)
                for k, v in config.items()}
    if isinstance(config, list):
        return [_float32(v) for v in config]
    return config


def export_copy(model, image_size, include_supervised_head=True):
    """A float32, strategy-free, fully trainable copy of a SimCLRModel.

    The copy is cloned from `model.get_config()`, so it has the model's
    architecture and train mode whatever the run's flags were.

    Args:
      model: the trained SimCLRModel (any strategy, precision, global_bn).
      image_size: input side used to create the variables.
      include_supervised_head: keep the classifier (if the model has one).

    Returns:
      A new SimCLRModel of the same architecture and train mode holding the
      same weights, with no block frozen. (A pretraining run's linear-eval
      head keeps its stop-gradient: labels never reach the encoder.)

    Raises:
      ValueError: the copy's architecture differs from the model's.
    """
    config = _float32(model.get_config())
    if not include_supervised_head:
        config["supervised_head"] = None
    with float32_policy():
        copy = type(model).from_config(config)
        copy(tf.zeros([1, image_size, image_size, 3]), training=False)
    copy.trainable = True
    single_replica_bn.use_single_replica_batch_norm(copy)
    unused = copy_weights(model, copy)
    expected = {v.path for v in model.supervised_head.weights} if (
        model.supervised_head is not None and not include_supervised_head) else set()
    if set(unused) - expected:
        raise ValueError("the export copy lacks weights of the trained model "
                         f"({sorted(set(unused) - expected)[:3]}).")
    return copy


def build_module(model: keras.Model, image_size: int,
                 include_projection_head: bool = True,
                 include_supervised_head: bool = True,
                 weight_decay: float = 0.0) -> module_lib.SimCLRHubModule:
    """The traced hub module of a trained model (see `export_copy`).

    Returns:
      A `module.SimCLRHubModule` with __call__ traced for every mode.
    """
    copy = export_copy(model, image_size,
                       include_supervised_head=include_supervised_head)
    return module_lib.SimCLRHubModule(
        copy, include_projection_head=include_projection_head,
        weight_decay=weight_decay).trace()


def save_module(module: module_lib.SimCLRHubModule, export_dir: str,
                image_size: int, *,
                serving_outputs=module_lib.VECTOR_OUTPUTS,
                include_bytes_signature: bool = True,
                info: dict | None = None, overwrite: bool = False) -> str:
    """Saves a hub module atomically: all of it at `export_dir`, or nothing.

    Writes into a hidden temporary sibling directory, then renames it into
    place; any failure removes the temporary directory. Replacing an
    existing export moves the old one aside first, so a loader never sees a
    partly written model.

    Args:
      module: a traced `module.SimCLRHubModule`.
      export_dir: destination directory.
      image_size: the trained side (serving signatures).
      serving_outputs: output names the signatures return; None: all.
      include_bytes_signature: add `serving_bytes` (encoded images).
      info: JSON-able dict written to assets.extra/simclr_export.json.
      overwrite: replace an existing `export_dir`.

    Returns:
      The absolute export directory.

    Raises:
      ExportError: `export_dir` exists and overwrite is False, or cannot
        be created.
      WriteError: writing the export failed (full disk, ...); the partial
        copy is removed and an existing `export_dir` is left as it was.
    """
    export_dir = preflight.check_destination(export_dir, overwrite)
    parent, name = os.path.split(export_dir)
    signatures = module_lib.serving_signatures(
        module, image_size, outputs=serving_outputs,
        include_bytes=include_bytes_signature)
    # Not mkdtemp: its 0700 mode would hide the model from a server user.
    tmp = os.path.join(parent, f".{name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        os.makedirs(parent, exist_ok=True)
        os.mkdir(tmp)
    except OSError as err:
        raise ExportError(
            f"export directory {export_dir} cannot be written ({err.strerror}); "
            "pass a writable --export_dir.") from err
    try:
        tf.saved_model.save(module, tmp, signatures=signatures)
        variables, trainable = _variable_paths(module)
        _write_info(tmp, dict(
            info or {}, image_size=image_size, signatures=sorted(signatures),
            variables=variables, trainable_variables=trainable))
        _move_into_place(tmp, export_dir)
    except (OSError, tf.errors.OpError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteError(
            f"cannot write the export {export_dir} ({io_reason(err)}); nothing "
            "was changed there. Free space (or fix permissions) and export "
            "again.") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return export_dir


def _variable_paths(module):
    if hasattr(module, "variable_paths"):
        return module.variable_paths()
    return ([v.name for v in module.variables],
            [v.name for v in module.trainable_variables])


def _write_info(directory, info):
    path = os.path.join(directory, EXPORT_INFO)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(info, f, indent=2, sort_keys=True, default=str)


def _move_into_place(tmp, export_dir):
    """Renames `tmp` to `export_dir`, swapping out an existing one."""
    old = None
    if os.path.exists(export_dir):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(export_dir)}.old-",
                               dir=os.path.dirname(export_dir))
        os.replace(export_dir, os.path.join(old, "export"))
    try:
        os.replace(tmp, export_dir)
    except BaseException:
        if old is not None:  # Put the previous export back.
            os.replace(os.path.join(old, "export"), export_dir)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def prune_exports(root, keep):
    """Deletes all but the newest `keep` numbered exports under `root`.

    Args:
      root: directory holding `<step>/` exports.
      keep: how many to keep; <= 0 keeps all.

    Returns:
      The removed directories.
    """
    if keep <= 0 or not os.path.isdir(root):
        return []
    steps = sorted(int(d) for d in os.listdir(root)
                   if d.isdigit() and os.path.isdir(os.path.join(root, d)))
    removed = [os.path.join(root, str(s)) for s in steps[:-keep]]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def export_model(model, config, export_dir, *, include_projection_head=True,
                 include_supervised_head=True, overwrite=False, info=None,
                 **save_options):
    """Exports a trained SimCLRModel under a run config to `export_dir`.

    Args:
      model: the trained SimCLRModel.
      config: the run's `simclr_tf2.config.RunConfig` (image_size, weight_decay).
      export_dir: destination directory (written atomically).
      include_projection_head, include_supervised_head: what to output.
      overwrite: replace an existing export.
      info: extra JSON-able facts for assets.extra/simclr_export.json.
      **save_options: `serving_outputs`, `include_bytes_signature`.

    Returns:
      The absolute export directory.
    """
    preflight.check_destination(export_dir, overwrite)  # Before the slow part.
    image_size = int(config.data.image_size)
    module = build_module(
        model, image_size,
        include_projection_head=include_projection_head,
        include_supervised_head=include_supervised_head,
        weight_decay=float(config.optim.weight_decay))
    return save_module(module, export_dir, image_size, overwrite=overwrite,
                       info=info, **save_options)


def export_to_model_dir(model, config, global_step, keep=1):
    """Exports to `model_dir/saved_model/<global_step>/`, keeping the newest.

    Args:
      model: the trained SimCLRModel.
      config: the run's `simclr_tf2.config.RunConfig` (train.model_dir).
      global_step: int step of the weights.
      keep: number of step exports to keep (keep_hub_module_max).

    Returns:
      The export directory.
    """
    root = rundir.export_root(config.train.model_dir)
    task = tasks.get(config.train.train_mode)  # What its exports keep.
    path = export_model(
        model, config, rundir.export_dir(config.train.model_dir, global_step),
        include_projection_head=task.export_projection_head,
        include_supervised_head=task.export_supervised_head,
        overwrite=True, info={"global_step": int(global_step),
                              "config": config.to_flat()})
    prune_exports(root, keep)
    return path
