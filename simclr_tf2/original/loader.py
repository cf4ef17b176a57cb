"""Finding and loading an original SimCLR TF2 model_dir, ckpt-N prefix or SavedModel.

``load_into`` assigns every variable of our encoder / heads from the
original's object graph (see ``layout``) or assigns none: a missing, extra
or differently shaped variable is refused with one line that names the
first few and the architecture flag that most likely differs.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from simclr_tf2 import rundir
from simclr_tf2.errors import OriginalCheckpointError
from simclr_tf2.original import architecture, layout
from simclr_tf2.rundir.object_graph import ObjectGraph


@dataclasses.dataclass
class OriginalModel:
    """A resolved original artefact.

    Attributes:
      path: what the user passed.
      prefix: checkpoint prefix that holds the variables.
      model_dir: directory of its flags.json (may lack one).
      graph: the ObjectGraph of `prefix`.
      flags: the flat flags.json ({} if absent).
      arch: architecture inferred by `architecture.infer_architecture`.
    """
    path: str
    prefix: str
    model_dir: str
    graph: ObjectGraph
    flags: dict
    arch: dict


def _newest_saved_model(model_dir):
    root = rundir.export_root(model_dir)
    if rundir.is_export(root):
        return root  # the published models: <model>/saved_model/saved_model.pb
    return rundir.latest_export(model_dir)


def _locate(path):
    """(checkpoint prefix, model_dir) for a model_dir, ckpt-N prefix or SavedModel, or None."""
    path = path.rstrip("/")
    if rundir.is_export(path):
        parent = os.path.dirname(path)
        model_dir = os.path.dirname(parent) if os.path.basename(parent) == rundir.SAVED_MODEL_DIR else path
        return os.path.join(path, "variables", "variables"), model_dir
    if tf.io.gfile.isdir(path):
        latest = rundir.latest_checkpoint(path)
        if latest:
            return latest, path
        saved = _newest_saved_model(path)
        return (os.path.join(saved, "variables", "variables"), path) if saved else None
    if tf.io.gfile.exists(path + ".index"):
        return path, os.path.dirname(path)
    return None


def is_original(path):
    """Whether `path` (model_dir, prefix or SavedModel) was written by the original code."""
    located = _locate(path)
    if located is None:
        return False
    try:
        graph = ObjectGraph(located[0])
    except (tf.errors.OpError, ValueError):
        return False
    return graph.node(layout.ENCODER) is not None


def open_original(path):
    """Resolves and inspects an original artefact.

    Raises:
      OriginalCheckpointError: nothing original is there.
    """
    located = _locate(path)
    if located is None or not is_original(path):
        raise OriginalCheckpointError(
            f"{path} is not a model_dir, ckpt-N prefix or SavedModel written by the "
            "original SimCLR TF2 code (no model/resnet_model in its checkpoint).")
    prefix, model_dir = located
    graph = ObjectGraph(prefix)
    flags = architecture.read_flags(model_dir)
    return OriginalModel(path, prefix, model_dir, graph, flags,
                         architecture.infer_architecture(graph, flags))


def _fits(saved, ours):
    # The original's SK/SE 1x1 convs are our Dense layers: [1, 1, a, b] -> [a, b].
    return tuple(saved) == tuple(ours) or (
        len(saved) == 4 and tuple(saved[:2]) == (1, 1) and tuple(saved[2:]) == tuple(ours))


def _built_arch(encoder, projection_head):
    arch = dict(resnet_depth=encoder.depth, width_multiplier=encoder.width_multiplier,
                cifar_stem=encoder.cifar_stem, sk_ratio=encoder.sk_ratio,
                se_ratio=encoder.se_ratio)
    if projection_head is not None:
        arch.update(proj_head_mode="nonlinear" if projection_head.depth else "none",
                    num_proj_layers=projection_head.depth or None,
                    proj_out_dim=projection_head.out_dim if projection_head.depth else None)
    return arch


def _likely_flags(saved, built):
    """Flags whose saved and built values differ (SK/SE compared by presence/width)."""
    def norm(key, value):
        if key in ("sk_ratio",):
            return value > 0
        if key == "se_ratio":
            return int(64 * built["width_multiplier"] * value)
        if key == "width_multiplier":
            return round(64 * value)
        return value
    if saved["proj_head_mode"] == "none":  # e.g. SimCLRv1: no projection head saved
        saved = dict(saved, num_proj_layers=None, proj_out_dim=None)
    return [f"--{k}={saved[k]}" for k in built
            if saved[k] is not None and norm(k, saved[k]) != norm(k, built[k])]


def _pairs(encoder, projection_head, supervised_head):
    parts = [(layout.ENCODER, layout.encoder_pairs(encoder))]
    if projection_head is not None:
        parts.append((layout.PROJECTION, layout.projection_pairs(projection_head)))
    if supervised_head is not None:
        parts.append((layout.SUPERVISED, layout.supervised_pairs(supervised_head)))
    return parts


def _problems(graph, parts):
    """Missing, extra and misshaped variables, as short strings."""
    problems = []
    for root, pairs in parts:
        mapped = set()
        for path, variable in pairs:
            node = graph.node(path)
            if graph.value_key(node) is None:
                problems.append(f"missing {path}")
                continue
            mapped.add(node)
            if not _fits(graph.shape(path), variable.shape):
                problems.append(f"{path} has shape {list(graph.shape(path))}, "
                                f"the model {list(variable.shape)}")
        extra = graph.variables_under(root)
        problems += [f"unexpected {p}" for n, p in sorted(extra.items(), key=lambda x: x[1])
                     if n not in mapped]
    return problems


def load_into(original, encoder, projection_head=None, supervised_head=None):
    """Assigns the original's weights to our (built) encoder and heads, all or nothing.

    Args:
      original: an OriginalModel (see `open_original`).
      encoder: a built ResNet.
      projection_head: a built ProjectionHead, or None to skip it.
      supervised_head: a built SupervisedHead without input normalisation,
        or None to skip it.

    Raises:
      OriginalCheckpointError: some variable is missing, extra or misshaped.
    """
    parts = _pairs(encoder, projection_head, supervised_head)
    problems = _problems(original.graph, parts)
    if problems:
        hint = _likely_flags(original.arch, _built_arch(encoder, projection_head))
        hint = (f"likely flag: {', '.join(hint)}" if hint else
                "use the architecture flags of the run that wrote it")
        shown = "; ".join(p.replace("/.ATTRIBUTES/VARIABLE_VALUE", "") for p in problems[:3])
        raise OriginalCheckpointError(
            f"original checkpoint {original.prefix} does not match the model built from "
            f"the flags ({len(problems)} differences: {shown}); {hint}.")
    for _, pairs in parts:
        for path, variable in pairs:
            variable.assign(np.reshape(original.graph.value(path), variable.shape))
