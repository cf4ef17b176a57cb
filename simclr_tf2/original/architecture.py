"""The architecture an original checkpoint holds: from its variables, and its flags.json.

Shapes decide everything they can (depth, width, SK, SE, CIFAR stem, head
sizes); the original's flat ``flags.json``, when present, adds what shapes
cannot tell (``ft_proj_selector``, ``image_size``, the exact ``sk_ratio``
when the SK bottleneck sits at its minimum width of 32).
"""

import json
import os

from simclr_tf2 import rundir
from simclr_tf2.errors import CheckpointMismatchError
from simclr_tf2.models.resnet import BLOCK_SPECS
from simclr_tf2.original.layout import ENCODER, PROJECTION, SUPERVISED

SK_MIN_DIM = 32
DEFAULT_SK_RATIO = 0.0625  # the only value the SimCLRv2 models use


def _count(graph, path):
    return len([n for n in graph.children(path) if n.isdigit()])


def _depth(graph):
    blocks = tuple(_count(graph, f"{ENCODER}/block_groups/{g}/layers") for g in range(4))
    bottleneck = "conv_relu_dropblock_layers" in graph.children(
        f"{ENCODER}/block_groups/0/layers/0")
    for depth, spec in BLOCK_SPECS.items():
        if spec == (bottleneck, blocks):
            return depth
    raise CheckpointMismatchError(
        f"checkpoint {graph.prefix} holds a ResNet with {blocks} blocks per "
        "group, which is no ResNet depth this project builds.")


def _stem(graph):
    """(first stem width, cifar_stem, deep stem)."""
    stem = f"{ENCODER}/initial_conv_relu_max_pool"
    convs = [i for i in sorted(map(int, filter(str.isdigit, graph.children(stem))))
             if graph.shape(f"{stem}/{i}/conv2d/kernel") is not None]
    last = graph.shape(f"{stem}/{convs[-1]}/conv2d/kernel")
    return last[-1], len(convs) == 1 and last[0] == 3, len(convs) == 3


def _block_paths(graph, bottleneck):
    block = f"{ENCODER}/block_groups/0/layers/0"
    main = f"{block}/conv_relu_dropblock_layers" if bottleneck else f"{block}/conv2d_bn_layers"
    return block, main


def infer_from_variables(graph):
    """Architecture flags from the variables of an original checkpoint.

    Returns:
      dict with resnet_depth, width_multiplier, cifar_stem, sk_ratio,
      se_ratio, proj_head_mode, num_proj_layers, proj_out_dim, num_classes
      (0 without a supervised head).
    """
    depth = _depth(graph)
    bottleneck = BLOCK_SPECS[depth][0]
    stem_width, cifar_stem, deep = _stem(graph)
    block, main = _block_paths(graph, bottleneck)
    filters = graph.shape(f"{main}/0/conv2d/kernel")[-1]  # group 1 width, 64 * w
    sk_mid = graph.shape(f"{main}/3/conv2d_0/kernel")
    sk_ratio = 0.0
    if sk_mid is not None:
        sk_ratio = sk_mid[-1] / filters if sk_mid[-1] > SK_MIN_DIM else DEFAULT_SK_RATIO
    elif deep or graph.shape(f"{block}/shortcut_layers/1/conv2d/kernel") is not None:
        sk_ratio = DEFAULT_SK_RATIO  # ResNet-D without SK: a basic-block net built with sk_ratio
    se_path = (f"{main}/{8 if sk_mid else 9}" if bottleneck else f"{block}/se_layer")
    se_width = graph.shape(f"{se_path}/se_reduce/kernel")
    layers = _count(graph, f"{PROJECTION}/linear_layers")
    sup = graph.shape(f"{SUPERVISED}/linear_layer/dense/kernel")
    return dict(
        resnet_depth=depth, width_multiplier=stem_width / 64, cifar_stem=cifar_stem,
        sk_ratio=sk_ratio, se_ratio=se_width[-1] / filters if se_width else 0.0,
        proj_head_mode="nonlinear" if layers else "none", num_proj_layers=max(layers, 1),
        proj_out_dim=(graph.shape(f"{PROJECTION}/linear_layers/{layers - 1}/dense/kernel")[-1]
                      if layers else 128),
        num_classes=sup[-1] if sup else 0)


def read_flags(model_dir):
    """The original's (or our) flat flags.json in `model_dir`, or {}."""
    path = os.path.join(model_dir, rundir.FLAGS_JSON)
    try:
        with open(path) as f:
            flags = json.load(f)
    except (OSError, ValueError):
        return {}
    return flags if isinstance(flags, dict) else {}


def infer_architecture(graph, flags):
    """Variables first; flags.json fills in ft_proj_selector, image_size, exact ratios."""
    arch = infer_from_variables(graph)
    for key in ("sk_ratio", "se_ratio"):
        value = flags.get(key)
        # Only take a recorded ratio that builds the same shapes.
        if isinstance(value, (int, float)) and (value > 0) == (arch[key] > 0) and (
                key == "sk_ratio" or int(arch["width_multiplier"] * 64 * value)
                == int(arch["width_multiplier"] * 64 * arch[key])):
            arch[key] = float(value)
    arch["ft_proj_selector"] = int(flags.get("ft_proj_selector", 0) or 0)
    if "image_size" in flags:
        arch["image_size"] = int(flags["image_size"])
    return arch
