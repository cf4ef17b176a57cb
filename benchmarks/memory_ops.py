"""Time of the memory's own operations: the loss against a buffer, the enqueue, the EMA update.

Each operation runs in a `tf.function` on random tensors, once to trace,
then `--repeats` times; it prints milliseconds per call (wall and CPU of
all threads). The losses are timed with their gradient w.r.t. the
projections, memory loss against a full buffer next to NT-Xent without the
memory at the same batch; the EMA update is one step of a ResNet plus a
3-layer head. The
memory network's forward pass costs one inference forward of the encoder
and head on both views and is measured with the training step, not here.

    python benchmarks/memory_ops.py --batch 256 --memory_size 65536
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from simclr_tf2 import losses  # noqa: E402
from simclr_tf2 import memory  # noqa: E402
from simclr_tf2.models.heads import ProjectionHead  # noqa: E402
from simclr_tf2.models.resnet import ResNet  # noqa: E402
from throughput import clocks  # noqa: E402
from throughput import device_string  # noqa: E402


def per_call_ms(fn, args, repeats):
    """(wall ms, CPU ms) per call of the traced `fn`, after one warm-up."""
    fn(*args)
    start = clocks()
    for _ in range(repeats):
        result = fn(*args)
    if result is not None:
        tf.nest.map_structure(lambda t: t.numpy(), result)
    return ((clocks() - start) / repeats * 1e3).round(2).tolist()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="examples N")
    parser.add_argument("--memory_size", type=int, default=65536)
    parser.add_argument("--proj_out_dim", type=int, default=128)
    parser.add_argument("--resnet_depth", type=int, default=50,
                        help="depth of the network whose EMA is timed")
    parser.add_argument("--width_multiplier", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    dim, n = args.proj_out_dim, args.batch
    queries = tf.random.normal([2 * n, dim])
    keys = tf.random.normal([2 * n, dim])
    buffer = memory.KeyBuffer(args.memory_size, dim)
    buffer.enqueue(tf.random.normal([args.memory_size, dim]))  # full

    @tf.function
    def memory_loss(q, k):
        with tf.GradientTape() as tape:
            tape.watch(q)
            past, _, valid = buffer()
            loss = memory.memory_contrastive_loss(q, k, past, valid,
                                                  temperature=0.1)[0]
        return loss, tape.gradient(loss, q)

    @tf.function
    def nt_xent(q):
        with tf.GradientTape() as tape:
            tape.watch(q)
            loss = losses.add_contrastive_loss(q, temperature=0.1)[0]
        return loss, tape.gradient(loss, q)
    enqueue = tf.function(lambda k: buffer.enqueue(k))

    encoder = ResNet(depth=args.resnet_depth,
                     width_multiplier=args.width_multiplier, cifar_stem=True)
    head = ProjectionHead(num_layers=3, out_dim=dim)
    head(encoder(tf.zeros([1, 32, 32, 3]))["final_avg_pool"])
    ema = memory.MemoryNetwork.from_networks(encoder, head, (32, 32, 3))
    ema_update = tf.function(lambda: ema.update(encoder, head))

    rows = {
        "nt_xent_ms": per_call_ms(nt_xent, (queries,), args.repeats),
        "memory_loss_ms": per_call_ms(memory_loss, (queries, keys),
                                      args.repeats),
        "enqueue_ms": per_call_ms(enqueue, (keys,), args.repeats),
        "ema_update_ms": per_call_ms(ema_update, (), args.repeats),
    }
    print(json.dumps({"device": device_string(), **vars(args),
                      "ema_variables": len(ema.weights),
                      "(wall, cpu) per call": rows}, indent=1))


if __name__ == "__main__":
    main()
