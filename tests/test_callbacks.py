"""callbacks.PeriodicKnnEval: when it measures, what it prints and writes."""

import types

import numpy as np
import tensorflow as tf

from simclr_tf2.training import callbacks
from simclr_tf2.analysis import pictures


def test_periodic_knn_eval_every_n_steps(tmp_path):
    iterations = tf.Variable(0, dtype=tf.int64)
    calls, lines = [], []

    def measure():
        calls.append(int(iterations.numpy()))
        return 0.25 * len(calls)

    writer = tf.summary.create_file_writer(str(tmp_path))
    callback = callbacks.PeriodicKnnEval(3, measure, writer, lines.append)
    callback.set_model(types.SimpleNamespace(
        optimizer=types.SimpleNamespace(iterations=iterations)))
    for step in range(1, 8):
        iterations.assign(step)
        callback.on_train_batch_end(step - 1)
    writer.flush()
    assert calls == [3, 6]
    assert lines == ["step 3 | knn_top_1_accuracy 0.2500",
                     "step 6 | knn_top_1_accuracy 0.5000"]
    steps, values = pictures.read_scalars(str(tmp_path))["train/knn_top_1_accuracy"]
    np.testing.assert_array_equal(steps, [3, 6])
    np.testing.assert_allclose(values, [0.25, 0.5])
