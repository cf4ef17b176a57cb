"""ResNet-101 and ResNet-152 at 1/16 width: block layout and output widths."""

import collections

import pytest
import tensorflow as tf

from simclr_tf2.models.resnet import ResNet


@pytest.mark.parametrize("depth,blocks", [(101, (3, 4, 23, 3)),
                                          (152, (3, 8, 36, 3))])
def test_deep_resnet_block_layout(depth, blocks):
    encoder = ResNet(depth=depth, width_multiplier=0.0625, cifar_stem=True)
    outputs = encoder(tf.zeros([1, 16, 16, 3]), training=False)
    per_group = collections.defaultdict(set)
    for v in encoder.weights:
        parts = v.path.split("/")
        group = next((p for p in parts if p.startswith("block_group")), None)
        if group:
            per_group[group].add(parts[parts.index(group) + 1])
    assert tuple(len(per_group[f"block_group{i}"]) for i in (1, 2, 3, 4)) == blocks
    # Bottleneck: 4 x (64, 128, 256, 512) channels, at 1/16 width.
    assert [outputs[f"block_group{i}"].shape[-1] for i in (1, 2, 3, 4)] == [
        16, 32, 64, 128]
    assert outputs["final_avg_pool"].shape == (1, 128)
    # 3 convs per block + 1 projection per group + the stem conv.
    kernels = [v for v in encoder.weights if v.path.endswith("kernel")]
    assert len(kernels) == 3 * sum(blocks) + 4 + 1
