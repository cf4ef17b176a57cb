"""The Python API on a user's own data: contrastive_batches, pretraining_model,
compile/fit with LARS under a strategy, .keras round trip, export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import optim
from simclr_tf2 import tasks
from simclr_tf2.data import augment
from simclr_tf2.data.pipeline import contrastive_batches
from simclr_tf2.models import backbones
from simclr_tf2.models import build
from simclr_tf2.models.simclr_model import SimCLRModel

SIDE = 16


def _images(num=12, side=20, channels=3, seed=0):
    return np.random.default_rng(seed).integers(
        0, 256, [num, side, side, channels], np.uint8)


def _first(dataset):
    return {k: v.numpy() for k, v in next(iter(dataset)).items()}


def test_batches_are_two_views_of_each_example_from_the_seed_stream():
    images = _images()
    batch = _first(contrastive_batches(
        tf.data.Dataset.from_tensor_slices(images), image_size=SIDE,
        batch_size=4, seed=3, shuffle_buffer=0))
    assert batch["image"].shape == (4, SIDE, SIDE, 6)
    assert batch["image"].dtype == np.float32
    np.testing.assert_array_equal(batch["label"], [-1, -1, -1, -1])
    np.testing.assert_array_equal(batch["id"], [0, 1, 2, 3])
    # Example i is augmented with the i-th seed of the shared stream.
    seeds = list(tf.data.Dataset.random(seed=3).batch(2).take(4))
    for i, seed in enumerate(seeds):
        expected = augment.two_views(images[i], SIDE, seed)
        np.testing.assert_allclose(batch["image"][i], expected, atol=1e-5)
    assert not np.allclose(batch["image"][..., :3], batch["image"][..., 3:])


def test_labels_ids_and_element_structures():
    images, labels = _images(), np.arange(12) % 3
    pairs = tf.data.Dataset.from_tensor_slices((images, labels))
    batch = _first(contrastive_batches(pairs, image_size=SIDE, batch_size=6,
                                       shuffle_buffer=0))
    np.testing.assert_array_equal(batch["label"], labels[:6])
    dicts = tf.data.Dataset.from_tensor_slices(
        {"image": images, "id": np.arange(100, 112), "other": labels})
    batch = _first(contrastive_batches(dicts, image_size=SIDE, batch_size=6,
                                       shuffle_buffer=0))
    np.testing.assert_array_equal(batch["id"], np.arange(100, 106))
    np.testing.assert_array_equal(batch["label"], [-1] * 6)
    # Float [0, 1], grayscale, batched (as image_dataset_from_directory gives).
    gray = (_images(channels=1) / 255.0).astype(np.float32)
    batched = tf.data.Dataset.from_tensor_slices(gray).batch(5)
    batch = _first(contrastive_batches(batched, image_size=SIDE, batch_size=8,
                                       shuffle_buffer=0))
    assert batch["image"].shape == (8, SIDE, SIDE, 6)
    np.testing.assert_array_equal(batch["id"], np.arange(8))


def test_repeats_drops_remainder_and_is_seeded():
    data = tf.data.Dataset.from_tensor_slices(_images(num=5))

    def ids(seed):
        ds = contrastive_batches(data, image_size=SIDE, batch_size=4, seed=seed)
        return [b["id"].numpy().tolist() for b in ds.take(5)]

    first = ids(0)
    assert all(len(b) == 4 for b in first)  # 20 examples: 4 passes of 5.
    assert sorted(sum(first, [])) == sorted(list(range(5)) * 4)
    assert first == ids(0)
    assert first != ids(1)


def test_bad_elements_and_batch_size_are_value_errors():
    data = tf.data.Dataset.from_tensor_slices({"pixels": _images()})
    with pytest.raises(ValueError, match="'image' key"):
        contrastive_batches(data, image_size=SIDE, batch_size=4)
    with pytest.raises(ValueError, match="batch_size"):
        contrastive_batches(tf.data.Dataset.from_tensor_slices(_images()),
                            image_size=SIDE, batch_size=0)


def test_float_images_above_one_are_refused():
    images = _images().astype(np.float32)  # [0, 255], not [0, 1].
    batches = contrastive_batches(tf.data.Dataset.from_tensor_slices(images),
                                  image_size=SIDE, batch_size=4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="by 255"):
        next(iter(batches))


def _tiny_encoder():
    inputs = keras.Input([None, None, 3])
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    return backbones.BackboneEncoder(keras.Model(inputs, x), name="backbone")


def _compile(model, batch_size, num_examples):
    schedule = optim.build_learning_rate_schedule(
        0.075, "sqrt", batch_size, num_examples, warmup_epochs=1,
        train_epochs=2)
    model.compile(optim.build_optimizer("lars", schedule, weight_decay=1e-6),
                  task=tasks.PretrainTask(temperature=0.2))


def test_pretraining_model_wires_encoder_and_projection_head():
    model = build.pretraining_model(_tiny_encoder(), proj_out_dim=5,
                               num_proj_layers=3, image_size=SIDE)
    assert isinstance(model, SimCLRModel) and model.built
    assert model.supervised_head is None
    assert model.projection_head.depth == 3
    out = model(np.zeros([2, SIDE, SIDE, 3], np.float32), training=False)
    assert out["final_avg_pool"].shape == (2, 8)
    assert out["proj_head_output"].shape == (2, 5)


def _fit_save_load_export(model, images, tmp_path, side=SIDE, batch_size=4,
                          steps=2):
    """Fits, then checks .keras and SavedModel round trips give its outputs."""
    from simclr_tf2.export import saved_model
    before = [v.numpy().copy() for v in model.trainable_variables]
    batches = contrastive_batches(tf.data.Dataset.from_tensor_slices(images),
                                  image_size=side, batch_size=batch_size)
    history = model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.allclose(b, v.numpy())
               for b, v in zip(before, model.trainable_variables))
    x = (images[:3, :side, :side] / 255.0).astype(np.float32)
    ref = model(x, training=False)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    out = loaded(x, training=False)
    assert sorted(out) == sorted(ref)
    for key in ref:
        np.testing.assert_array_equal(out[key].numpy(), ref[key].numpy())
    module = saved_model.build_module(model, side)
    saved_model.save_module(module, str(tmp_path / "export"), side)
    served = tf.saved_model.load(str(tmp_path / "export"))(x, trainable=False)
    np.testing.assert_allclose(served["final_avg_pool"].numpy(),
                               ref["final_avg_pool"].numpy(), atol=1e-5)


def test_fit_save_load_export_with_a_custom_encoder(tmp_path):
    model = build.pretraining_model(_tiny_encoder(), proj_out_dim=8,
                               image_size=SIDE)
    _compile(model, 4, 12)
    _fit_save_load_export(model, _images(), tmp_path)


def test_fit_under_two_replica_strategy(two_replica_strategy, tmp_path):
    with two_replica_strategy.scope():
        model = build.pretraining_model(_tiny_encoder(), proj_out_dim=8,
                                   global_bn=True, image_size=SIDE)
        _compile(model, 8, 16)
    _fit_save_load_export(model, _images(num=16), tmp_path, batch_size=8)


@pytest.mark.slow
def test_keras_application_under_two_replica_strategy(two_replica_strategy,
                                                      tmp_path):
    with two_replica_strategy.scope():
        model = build.pretraining_model(
            backbones.keras_application("MobileNetV3Small", global_bn=True),
            global_bn=True, image_size=32)  # MobileNetV3Small: >= 32 px.
        _compile(model, 8, 16)
    _fit_save_load_export(model, _images(num=16, side=32), tmp_path, side=32,
                          batch_size=8)
