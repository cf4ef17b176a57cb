"""Values of the evaluation metrics: top-1, top-5, -1 masking, regularisation."""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import optim
from tests import harness

CLASSES = 10


def _ranked_labels(logits):
    """Labels with known top-1/top-5 outcome, plus unlabelled (-1) rows.

    Rows 0-3: the arg-max class (top-1 and top-5 hit). Rows 4-7: the
    third-ranked class (top-5 hit, top-1 miss). Rows 8-9: the last-ranked
    class (both miss). Rows 10-11: -1, which must not count at all.
    """
    order = np.argsort(-logits, axis=-1)
    labels = np.concatenate([order[0:4, 0], order[4:8, 2], order[8:10, -1],
                             [-1, -1]])
    return labels.astype(np.int64)


@pytest.fixture(scope="module")
def model_and_data():
    model = harness.make_model("finetune", num_classes=CLASSES,
                               optimizer="momentum", weight_decay=1e-3)
    images = harness.random_images(12, seed=3)
    logits = model(images, training=False)["logits_sup"].numpy()
    # Distinct logits per row, so ranks are unambiguous.
    assert all(len(set(np.round(row, 6))) == CLASSES for row in logits)
    labels = _ranked_labels(logits)
    data = tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": tf.constant(labels)}).batch(5)
    return model, data


def test_eval_top1_top5_values_and_minus_one_masking(model_and_data):
    model, data = model_and_data
    result = harness.evaluate_model(model, data, global_step=7)
    # 10 labelled rows: 4 top-1 hits, 8 top-5 hits; the 2 unlabelled ignored.
    np.testing.assert_allclose(result["eval/label_top_1_accuracy"], 0.4,
                               atol=1e-6)
    np.testing.assert_allclose(result["eval/label_top_5_accuracy"], 0.8,
                               atol=1e-6)
    assert result["global_step"] == 7.0


def test_eval_regularization_loss_is_the_l2_of_every_non_bn_variable(
        model_and_data):
    model, data = model_and_data
    result = harness.evaluate_model(model, data, global_step=0)
    chosen = [v for v in model.trainable_variables
              if "batch_normalization" not in optim.variable_path(v)]
    # Kernels and biases of convs and heads: a sizeable set, not just one.
    assert len(chosen) > 20
    expected = 1e-3 * sum(0.5 * float(np.sum(np.square(v.numpy())))
                          for v in chosen)
    np.testing.assert_allclose(result["eval/regularization_loss"], expected,
                               rtol=1e-4)


def test_top5_is_not_trivially_one_with_three_classes_and_top1_is_checked():
    """With 3 classes top-5 is top-3: always 1, so top-1 must be checked."""
    model = harness.make_model("finetune", num_classes=3,
                               optimizer="momentum")
    images = harness.random_images(6, seed=4)
    logits = model(images, training=False)["logits_sup"].numpy()
    order = np.argsort(-logits, axis=-1)
    labels = np.concatenate([order[:3, 0], order[3:, 1]]).astype(np.int64)
    data = tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": tf.constant(labels)}).batch(6)
    result = harness.evaluate_model(model, data, global_step=0)
    np.testing.assert_allclose(result["eval/label_top_1_accuracy"], 0.5,
                               atol=1e-6)
    assert result["eval/label_top_5_accuracy"] == 1.0


def test_training_accuracy_and_loss_ignore_unlabelled_rows():
    logits = tf.constant([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0],
                          [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    labels = tf.constant([0, 0, -1, -1], tf.int64)
    loss, metrics = harness.supervised_loss_and_metrics(labels, logits)
    correct, weights = metrics["supervised_acc"]
    np.testing.assert_array_equal(weights.numpy(), [1, 1, 0, 0])
    accuracy = float(tf.reduce_sum(correct * weights) / tf.reduce_sum(weights))
    assert accuracy == 0.5
    log_softmax = tf.nn.log_softmax(logits).numpy()
    expected = -(log_softmax[0, 0] + log_softmax[1, 0]) / 2
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
