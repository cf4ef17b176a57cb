"""Gradient caching: the exact NT-Xent gradient of a large batch, in chunks.

NT-Xent couples every example of the batch to every other one, so the batch
cannot simply be split into independent micro-batches with accumulated
gradients. Gradient caching (Gao et al., 2021, "Scaling Deep Contrastive
Learning Batch Size under Memory Limited Setup") splits the step instead:

1. Embed: run the model forward, chunk by chunk and without a tape, to get
   the projections z of all 2N views (and the supervised logits).
2. Loss: NT-Xent on all z (negatives from every replica, as usual) under a
   tape that watches z only, giving the cached gradient dL/dz [2N, P].
3. Backprop: for each chunk, recompute its forward pass under a tape and
   backpropagate the cached dL/dz of its rows (plus the chunk's share of the
   supervised loss); accumulate the parameter gradients. The regulariser's
   gradient is added once.

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

from simclr_tf2 import losses
from simclr_tf2.errors import ConfigError

_Z = "proj_head_output"
_LOGITS = "logits_sup"


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


def _views(chunk):
    """[M, H, W, 6] two stacked views -> [2M, H, W, 3], view 1 rows first."""
    return tf.concat(tf.split(chunk, 2, axis=-1), axis=0)


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


def _moving_statistics(model):
    """BN moving means and variances: updated by a training-mode forward."""
    return [v for v in model.non_trainable_variables
            if v.path.endswith(("moving_mean", "moving_variance"))]


def _must_unroll(model):
    """Whether the chunk loop must be unrolled (sync BN under a strategy)."""
    if tf.distribute.get_strategy().num_replicas_in_sync == 1:
        return False
    return any(isinstance(layer, keras.layers.BatchNormalization)
               and layer.synchronized and layer.trainable
               for layer in model._flatten_layers())


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


def embed(model, images, micro_batch_size, unroll=False):
    """Pass 1: model outputs of all views, chunk by chunk, without a tape.

    Moving BN statistics are left as they were before the call.

    Args:
      model: a SimCLRModel.
      images: [N, H, W, 6] two views stacked on channels.
      micro_batch_size: examples per chunk M; must divide N.
      unroll: see `_chunk_loop`.

    Returns:
      Dict with "proj_head_output" [2N, P] and, when the model has a
      supervised head, "logits_sup" [2N, C] (float32, view-1 rows first).
    """
    k = num_chunks(images.shape[0], micro_batch_size)
    chunks = tf.reshape(images, [k, micro_batch_size, *images.shape[1:]])
    keys = [_Z] + ([_LOGITS] if model.supervised_head is not None else [])
    stats = _moving_statistics(model)
    saved = _read(stats)

    def body(i, arrays):
        outputs = model(_views(chunks[i]), training=True)
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


def contrastive_gradient(model, z, scale):
    """Pass 2: NT-Xent of all projections and its gradient w.r.t. them.

    Args:
      model: a SimCLRModel (temperature, hidden_norm).
      z: [2N, P] float32 projections of this replica, view-1 rows first.
      scale: scalar multiplying the loss before differentiation (loss
        scaling and 1/replicas).

    Returns:
      (loss, dz [2N, P], logits_con [N, N_g], labels_con [N, 2 N_g]).
    """
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss, logits_con, labels_con = losses.add_contrastive_loss(
            z, hidden_norm=model.hidden_norm, temperature=model.temperature,
            strategy=tf.distribute.get_strategy())
        scaled = loss * scale
    return loss, tape.gradient(scaled, z), logits_con, labels_con


def _supervised_sum(labels, logits):
    """Sum of the cross entropy over labelled rows ([B] labels, [B, C])."""
    labels = tf.cast(labels, tf.int32)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.maximum(labels, 0), logits)
    return tf.reduce_sum(per_example * tf.cast(labels >= 0, tf.float32))


def backprop(model, images, labels, dz, scale, micro_batch_size,
             unroll=False):
    """Pass 3: recompute each chunk under a tape and backprop its cached dz.

    The supervised head (when present) is trained on each chunk's share of
    the batch's mean cross entropy. BN moving statistics get one update: the
    mean of the chunks' updates.

    Args:
      model: a SimCLRModel.
      images: [N, H, W, 6] the same batch as in `embed`.
      labels: [N] int labels, -1 for unlabeled.
      dz: [2N, P] the cached (already scaled) gradient w.r.t. projections.
      scale: scalar applied to the supervised loss (as to the NT-Xent loss).
      micro_batch_size: examples per chunk M.
      unroll: see `_chunk_loop`.

    Returns:
      Gradients, one per `model.trainable_variables` entry (None where the
      variable does not reach the outputs).
    """
    k = num_chunks(images.shape[0], micro_batch_size)
    chunks = tf.reshape(images, [k, micro_batch_size, *images.shape[1:]])
    label_chunks = tf.reshape(labels, [k, micro_batch_size])
    dz_chunks = _to_chunk_order(dz, k)
    num_labelled = 2.0 * tf.reduce_sum(tf.cast(labels >= 0, tf.float32))
    sup_scale = tf.math.divide_no_nan(scale, num_labelled)
    variables = model.trainable_variables
    stats = _moving_statistics(model)
    saved = _read(stats)
    connected = []

    def body(i, state):
        grads, deltas = state
        with tf.GradientTape() as tape:
            outputs = model(_views(chunks[i]), training=True)
            targets, target_grads = [outputs[_Z]], [dz_chunks[i]]
            if _LOGITS in outputs:
                chunk_labels = tf.concat([label_chunks[i]] * 2, axis=0)
                targets.append(_supervised_sum(chunk_labels, outputs[_LOGITS]))
                target_grads.append(sup_scale)
        chunk_grads = tape.gradient(targets, variables, target_grads)
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


def compute_gradients(model, images, labels):
    """The pretraining loss and gradients of a batch, by gradient caching.

    Same result as a tape over `model`'s regular pretraining loss (up to the
    BN statistics, see the module docstring), scaled like the regular step
    (optimizer loss scaling and 1 / replicas). Updates the model's metrics.

    Args:
      model: a SimCLRModel with a compiled optimizer and micro_batch_size > 0.
      images: [N, H, W, 6] this replica's examples, two views stacked.
      labels: [N] int labels, -1 for unlabeled.

    Returns:
      (loss scalar float32, gradients aligned with model.trainable_variables).
    """
    micro = model.micro_batch_size
    num_chunks(images.shape[0], micro)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    scale = model.optimizer.scale_loss(tf.constant(1.0)) / replicas
    unroll = _must_unroll(model)
    outputs = embed(model, images, micro, unroll)
    loss, dz, logits_con, labels_con = contrastive_gradient(
        model, outputs[_Z], scale)
    accuracy, entropy = losses.contrastive_metrics(logits_con, labels_con)
    model._trackers["contrast_loss"].update_state(loss)
    model._trackers["contrast_acc"].update_state(accuracy)
    model._trackers["contrast_entropy"].update_state(entropy)
    if _LOGITS in outputs:
        loss += model._supervised_loss(tf.concat([labels, labels], 0),
                                       outputs[_LOGITS])
    grads = backprop(model, images, labels, dz, scale, micro, unroll)
    with tf.GradientTape() as tape:
        regulariser = model._weight_decay_term()
        scaled = regulariser * scale
    reg_grads = tape.gradient(scaled, model.trainable_variables)
    grads = [r if g is None else g if r is None else g + r
             for g, r in zip(grads, reg_grads)]
    loss += regulariser
    model._trackers["loss"].update_state(loss)
    return loss, grads


def train_step(model, data):
    """A SimCLRModel pretraining step by gradient caching (see module doc).

    Args:
      model: a SimCLRModel with micro_batch_size > 0.
      data: {"image": [N, H, W, 6], "label": [N]} of this replica.

    Returns:
      The metric results, as `SimCLRModel.train_step` returns them.
    """
    _, grads = compute_gradients(model, data["image"], data["label"])
    variables = model.trainable_variables
    model.optimizer.apply_gradients(
        [(g, v) for g, v in zip(grads, variables) if g is not None])
    return model._results(training=True)
