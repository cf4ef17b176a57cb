"""Gradient caching: the exact NT-Xent gradient of a large batch, in chunks.

NT-Xent couples every example of the batch to every other one, so the batch
cannot simply be split into independent micro-batches with accumulated
gradients. Gradient caching (Gao et al., 2021, "Scaling Deep Contrastive
Learning Batch Size under Memory Limited Setup") splits the step instead:

1. Embed: run the model forward, chunk by chunk and without a tape, to get
   the projections z of all 2N views (and the supervised logits).
2. Loss: the task's loss (`tasks.Task.compute_loss`: NT-Xent with
   negatives from every replica, plus the linear head's cross entropy) on
   all outputs, under a tape that watches the outputs only, giving the
   cached gradients dL/dz [2N, P] (and dL/dlogits [2N, C]).
3. Backprop: for each chunk, recompute its forward pass under a tape and
   backpropagate the cached gradients of its rows; accumulate the parameter
   gradients. The regulariser's gradient is added once.

Gradient caching is the model's alternative gradient engine: it asks the
task for the model inputs and the loss, as the one-pass step does.

Activations are alive for one chunk of M examples (2M views) at a time, so
memory is bounded by M, not by N; compute is about 1.5x a plain step (two
forward passes). The gradient equals the full-batch gradient exactly when
the forward pass of an example does not depend on the rest of its batch.

Batch norm is the exception. In training mode BN normalises each chunk with
the statistics of that chunk's 2M views (with global_bn, of that chunk on
every replica) instead of the whole batch: the standard gradient-caching
trade-off, as with per-device BN in data parallelism. Both passes see the
same chunks, so dL/dz and the recomputed activations stay consistent.
Moving statistics are updated once per step, not once per chunk and pass:
the embed pass restores them, and the backprop pass applies a single update
with the mean of the chunks' updates (batch means average exactly; the
variance lacks the between-chunk spread). With M == N a step is identical
to the regular one. With BN in inference mode the gradient is exact.

The chunk loop is a `tf.while_loop` (one traced body, one chunk alive at a
time). Synchronised BN all-reduces through `merge_call`, which TensorFlow
does not allow inside a while loop under multi-replica strategies, so in
that case the loop is unrolled in Python, each chunk starting only after
the previous one finished (control dependencies keep memory bounded).
"""

import keras
import tensorflow as tf

from simclr_tf2.optim.gradients import scale_for_replicas
from simclr_tf2.errors import ConfigError


def num_chunks(batch_size, micro_batch_size):
    """Chunks per replica, checking that the micro-batch divides the batch.

    Args:
      batch_size: examples per replica (static int).
      micro_batch_size: examples per chunk, > 0.

    Returns:
      batch_size // micro_batch_size.

    Raises:
      ConfigError: if the batch is unknown or not a multiple of the chunk.
    """
    if batch_size is None:
        raise ConfigError("--micro_batch_size needs a static per-replica batch "
                          "size; batch the dataset with drop_remainder=True.")
    if micro_batch_size <= 0 or batch_size % micro_batch_size:
        raise ConfigError(
            f"--micro_batch_size={micro_batch_size} must divide the per-replica "
            f"batch of {batch_size} examples (train_batch_size / replicas); "
            f"use a divisor of {batch_size}, or 0 to disable gradient caching.")
    return batch_size // micro_batch_size


def _to_view_order(stacked):
    """[K, 2M, D] per-chunk rows -> [2N, D] with all view-1 rows first."""
    k, two_m = stacked.shape[0], stacked.shape[1]
    x = tf.reshape(stacked, [k, 2, two_m // 2, -1])
    return tf.reshape(tf.transpose(x, [1, 0, 2, 3]), [k * two_m, -1])


def _to_chunk_order(rows, k):
    """Inverse of `_to_view_order`: [2N, D] -> [K, 2M, D]."""
    x = tf.reshape(rows, [2, k, rows.shape[0] // (2 * k), -1])
    return tf.reshape(tf.transpose(x, [1, 0, 2, 3]), [k, rows.shape[0] // k, -1])


def _read(variables):
    """Snapshot values of variables (later assignments do not change them)."""
    return [tf.identity(tf.convert_to_tensor(v)) for v in variables]


def moving_statistics(variables):
    """The BN moving means and variances among `variables` (a model's
    non-trainable variables): what a training-mode forward updates."""
    return [v for v in variables
            if v.path.endswith(("moving_mean", "moving_variance"))]


def must_unroll(layers):
    """Whether the chunk loop must be unrolled: trainable synchronised BN
    among `layers` (all of a model's layers) under several replicas."""
    if tf.distribute.get_strategy().num_replicas_in_sync == 1:
        return False
    return any(isinstance(layer, keras.layers.BatchNormalization)
               and layer.synchronized and layer.trainable for layer in layers)


def _chunk_loop(k, body, state, unroll):
    """Runs state = body(i, state) for i in 0..k-1, one chunk at a time.

    Args:
      k: number of chunks (int).
      body: function (index, state) -> state of the same structure.
      state: nest of tensors / TensorArrays.
      unroll: Python loop instead of `tf.while_loop`.

    Returns:
      The final state.
    """
    if not unroll:
        return tf.while_loop(lambda i, _: i < k,
                             lambda i, s: (i + 1, body(i, s)),
                             (tf.constant(0), state),
                             parallel_iterations=1)[1]
    for i in range(k):
        # Start chunk i only after chunk i-1 is done, so that a graph
        # executor cannot run chunks in parallel (memory stays per chunk).
        with tf.control_dependencies(
                tf.nest.flatten(state, expand_composites=True)):
            state = body(i, state)
    return state


def _chunks(images, micro_batch_size):
    """[N, ...] -> [K, M, ...]."""
    k = num_chunks(images.shape[0], micro_batch_size)
    return k, tf.reshape(images, [k, micro_batch_size, *images.shape[1:]])


def embed(forward, task, images, micro_batch_size, keys, stats=(),
          unroll=False):
    """Pass 1: model outputs of all views, chunk by chunk, without a tape.

    The moving BN statistics `stats` are left as they were before the call.

    Args:
      forward: callable model inputs -> output dict (training mode).
      task: a `tasks.Task` (`model_inputs` splits views).
      images: [N, H, W, 6] two views stacked on channels.
      micro_batch_size: examples per chunk M; must divide N.
      keys: the output names to keep, e.g. ("proj_head_output", "logits_sup").
      stats: the model's moving BN statistics (see `moving_statistics`).
      unroll: see `_chunk_loop`.

    Returns:
      Dict key -> [2N, D] float32 (view-1 rows first).
    """
    k, chunks = _chunks(images, micro_batch_size)
    saved = _read(stats)

    def body(i, arrays):
        outputs = forward(task.model_inputs({"image": chunks[i]}))
        return {key: arrays[key].write(i, tf.stop_gradient(outputs[key]))
                for key in keys}

    arrays = {key: tf.TensorArray(tf.float32, size=k,
                                 element_shape=[2 * micro_batch_size, None])
              for key in keys}
    arrays = _chunk_loop(k, body, arrays, unroll)
    outputs = {key: _to_view_order(arrays[key].stack()) for key in keys}
    with tf.control_dependencies(tf.nest.flatten(outputs)):
        for var, value in zip(stats, saved):
            var.assign(value)
    return outputs


def output_gradients(task, model, batch, outputs, scale):
    """Pass 2: the task's loss on all outputs and its gradient w.r.t. them.

    Args:
      task: a `tasks.Task`.
      model: the model being trained (passed on to `task.compute_loss`).
      batch: this replica's batch dict ("label" [N], -1 for unlabeled).
      outputs: dict key -> [2N, D] float32 of this replica (from `embed`).
      scale: scalar multiplying the loss before differentiation (loss
        scaling and 1/replicas).

    Returns:
      (loss, metrics, dict key -> d(scale * loss)/d outputs[key] [2N, D]).
    """
    with tf.GradientTape() as tape:
        tape.watch(outputs)
        loss, metrics = task.compute_loss(model, batch, outputs)
        scaled = loss * scale
    return loss, metrics, tape.gradient(scaled, outputs)


def backprop(forward, task, images, d_outputs, variables,
             micro_batch_size, stats=(), unroll=False):
    """Pass 3: recompute each chunk under a tape and backprop its cached
    output gradients. BN moving statistics get one update: the mean of the
    chunks' updates.

    Args:
      forward, task: as for `embed`.
      images: [N, H, W, 6] the same batch as in `embed`.
      d_outputs: dict key -> [2N, D] cached (already scaled) gradients.
      variables: the trainable variables.
      micro_batch_size: examples per chunk M.
      stats, unroll: as for `embed`.

    Returns:
      Gradients, one per `variables` entry (None where the variable does
      not reach the outputs).
    """
    k, chunks = _chunks(images, micro_batch_size)
    keys = [key for key in sorted(d_outputs) if d_outputs[key] is not None]
    d_chunks = {key: _to_chunk_order(d_outputs[key], k) for key in keys}
    saved = _read(stats)
    connected = []

    def body(i, state):
        grads, deltas = state
        with tf.GradientTape() as tape:
            outputs = forward(task.model_inputs({"image": chunks[i]}))
        chunk_grads = tape.gradient([outputs[key] for key in keys], variables,
                                    [d_chunks[key][i] for key in keys])
        # Known when the body is traced: which variables get no gradient
        # (None), so that they stay None, as in the regular step.
        connected[:] = [g is not None for g in chunk_grads]
        grads = [a if g is None else a + g for a, g in zip(grads, chunk_grads)]
        new_deltas = []
        for var, value, delta in zip(stats, saved, deltas):
            new_deltas.append(delta + (tf.convert_to_tensor(var) - value))
            var.assign(value)
        return grads, new_deltas

    state = ([tf.zeros(v.shape, v.dtype) for v in variables],
             [tf.zeros_like(value) for value in saved])
    grads, deltas = _chunk_loop(k, body, state, unroll)
    for var, value, delta in zip(stats, saved, deltas):
        var.assign(value + delta / k)
    return [g if c else None for g, c in zip(grads, connected)]


def compute_gradients(model, task, data, *, micro_batch_size):
    """Loss, metrics and gradients of a contrastive batch by gradient caching.

    Same result as the one-pass `SimCLRModel.loss_and_gradients` (up to the
    BN statistics, see the module docstring), scaled like it.

    Args:
      model: the `SimCLRModel` being trained (its optimizer's loss scale).
      task: a `tasks.Task` with `supports_gradient_caching`.
      data: this replica's batch {"image": [N, H, W, 6], "label": [N], ...}.
      micro_batch_size: examples per chunk, > 0.

    Returns:
      (loss: task loss + regulariser, metrics dict, gradients aligned with
      `model.trainable_variables`, None where a variable does not reach the
      loss).
    """
    images = data["image"]
    variables = model.trainable_variables
    num_chunks(images.shape[0], micro_batch_size)
    scale = scale_for_replicas(model.optimizer, tf.constant(1.0))
    stats = moving_statistics(model.non_trainable_variables)
    unroll = must_unroll(model._flatten_layers())

    def forward(inputs):
        return model(inputs, training=True)

    keys = task.output_keys(model.supervised_head is not None)
    outputs = embed(forward, task, images, micro_batch_size, keys, stats,
                    unroll)
    loss, metrics, d_outputs = output_gradients(task, model, data, outputs,
                                                scale)
    grads = backprop(forward, task, images, d_outputs, variables,
                     micro_batch_size, stats, unroll)
    with tf.GradientTape() as tape:
        regulariser, reg_metrics = task.regularization(variables)
        scaled = regulariser * scale
    reg_grads = tape.gradient(scaled, variables)
    grads = [r if g is None else g if r is None else g + r
             for g, r in zip(grads, reg_grads)]
    return loss + regulariser, dict(metrics, **reg_metrics), grads
