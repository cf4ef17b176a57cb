"""Where each variable of our encoder and heads sits in the original's object graph.

The original model (``tf2/model.py``) is ``model.resnet_model`` (stem list
``initial_conv_relu_max_pool``, ``block_groups[g].layers[b]`` with
``shortcut_layers``/``conv2d_bn_layers``/``se_layer`` in basic blocks and
``projection_layers``/``conv_relu_dropblock_layers`` in bottlenecks),
``model._projection_head.linear_layers[j]`` and
``model.supervised_head.linear_layer``. Lists keep layers without variables
(padding, pooling, identity, DropBlock), so a layer's index follows from the
architecture; this module walks our layers in the original's order and
assigns each variable its path there.
"""

BN_ATTRS = ("gamma", "beta", "moving_mean", "moving_variance")
ENCODER = "model/resnet_model"
PROJECTION = "model/_projection_head"
SUPERVISED = "model/supervised_head"


def _bn(bn, path):
    """[(path, variable)] of a BatchNormalization (absent gamma/beta skipped)."""
    return [(f"{path}/bn/{name}", getattr(bn, name)) for name in BN_ATTRS
            if getattr(bn, name, None) is not None]


def _conv_bn(conv_bn, conv_path, bn_path):
    return [(f"{conv_path}/conv2d/kernel", conv_bn.conv.kernel),
            *_bn(conv_bn.bn, bn_path)]


def _selective_kernel(sk, path):
    return [*_conv_bn(sk.branches, f"{path}/conv2d_fixed_padding", f"{path}/batch_norm_relu"),
            (f"{path}/conv2d_0/kernel", sk.squeeze.kernel),
            *_bn(sk.squeeze_bn, f"{path}/batch_norm_relu_1"),
            (f"{path}/conv2d_1/kernel", sk.mix.kernel)]


def _squeeze_excitation(se, path):
    return [(f"{path}/se_reduce/kernel", se.reduce.kernel),
            (f"{path}/se_reduce/bias", se.reduce.bias),
            (f"{path}/se_expand/kernel", se.expand.kernel),
            (f"{path}/se_expand/bias", se.expand.bias)]


def _block(block, path):
    """A ResidualBlock: shortcut list, main list (+ DropBlock slots), SE."""
    pairs = []
    if block.shortcut:
        name = "projection_layers" if block.bottleneck else "shortcut_layers"
        conv = len(block.shortcut) - 1  # after the padding / pooling layers
        pairs += _conv_bn(block.shortcut[-1], f"{path}/{name}/{conv}",
                          f"{path}/{name}/{conv + 1}")
    main = f"{path}/conv_relu_dropblock_layers" if block.bottleneck else f"{path}/conv2d_bn_layers"
    index = 0
    for layer in block.branch:
        if layer.name == "se":
            where = f"{main}/{index}" if block.bottleneck else f"{path}/se_layer"
            pairs += _squeeze_excitation(layer, where)
        elif layer.name == "sk_conv":
            pairs += _selective_kernel(layer, f"{main}/{index}")
            index += 1
        else:
            pairs += _conv_bn(layer, f"{main}/{index}", f"{main}/{index + 1}")
            index += 2
        if block.bottleneck and layer.name != "se":
            index += 1  # the DropBlock after each unit
    return pairs


def _stem(stem, path):
    """Stem convs; the original puts an identity ('initial_conv') before the last BN."""
    pairs, index = [], 0
    for i, conv_bn in enumerate(stem.convs):
        last = i == len(stem.convs) - 1
        pairs += _conv_bn(conv_bn, f"{path}/{index}", f"{path}/{index + (2 if last else 1)}")
        index += 2
    return pairs


def encoder_pairs(encoder):
    """[(original path, our variable)] for every variable of a ResNet encoder."""
    pairs = _stem(encoder.stem, f"{ENCODER}/initial_conv_relu_max_pool")
    for g, group in enumerate(encoder.block_groups):
        for b, block in enumerate(group.blocks):
            pairs += _block(block, f"{ENCODER}/block_groups/{g}/layers/{b}")
    return pairs


def projection_pairs(head):
    """[(original path, our variable)] of a ProjectionHead."""
    pairs = []
    for j, (dense, bn) in enumerate(zip(head.dense_layers, head.bn_layers)):
        path = f"{PROJECTION}/linear_layers/{j}"
        pairs += [(f"{path}/dense/kernel", dense.kernel), *_bn(bn, f"{path}/bn_relu")]
    return pairs


def supervised_pairs(head):
    """[(original path, our variable)] of a SupervisedHead (a plain linear layer)."""
    if getattr(head, "input_norm", None) is not None:
        raise ValueError("the original's supervised head has no input normalisation; "
                         "build it with normalize_input=False.")
    path = f"{SUPERVISED}/linear_layer/dense"
    return [(f"{path}/kernel", head.dense.kernel), (f"{path}/bias", head.dense.bias)]
