"""Every augmentation flag reaches the training pipeline run.py builds.

The path is the user's: run.py's flags are parsed (absl), turned into the
run's configuration as run.py does (recipes, validation), and the training
input is the batch stream the run's trainer feeds to `fit`. Starting from
every augmentation off, where the two views of a (grey) digit equal the
plain resized image, each flag turned on alone must change the views, and
--image_size must change their size.
"""

import copy

import numpy as np
import pytest
import tensorflow as tf
from absl import flags as absl_flags

import flags as run_flags
# The only library imports (paths may change when modules move).
from simclr_tf2.data import registry
from simclr_tf2.training.experiment import Experiment
from simclr_tf2.training.trainer import Trainer

TINY = ["--dataset=digits", "--resnet_depth=18", "--width_multiplier=0.125",
        "--proj_out_dim=8", "--num_proj_layers=2", "--train_batch_size=32",
        "--train_steps=1", "--seed=3"]
ALL_OFF = ["--image_size=16", "--color_jitter_strength=0", "--use_blur=false",
           "--crop_min_area=1.0", "--random_flip=false"]


def first_batch(tmp_path, *argv):
    """The first training batch of `python run.py <argv>` (not trained on)."""
    values = absl_flags.FlagValues()
    for flag in absl_flags.FLAGS.get_flags_for_module(run_flags.definitions):
        values[flag.name] = copy.deepcopy(flag)
    values(["run.py", *TINY, *argv])
    effective, _ = run_flags.effective_values(values)
    config = run_flags.config_from_values(effective, str(tmp_path / "m"))
    experiment = Experiment(config, tf.distribute.get_strategy(),
                            printer=lambda _: None)
    batch = next(iter(Trainer(experiment).train_dataset()))
    return batch["image"].numpy(), batch["id"].numpy()


def plain_images(ids, size=16):
    """The digits of `ids`, resized to size x size (eval preprocessing)."""
    source = registry.open_source("digits")
    images = {int(e["id"]): e["image"] for e in
              source.split("train").as_numpy_iterator()}
    out = []
    for i in ids:
        image = tf.image.convert_image_dtype(images[int(i)], tf.float32)
        image = tf.image.resize(tf.tile(image, [1, 1, 3]), [size, size],
                                method="bicubic")
        out.append(tf.clip_by_value(image, 0.0, 1.0).numpy())
    return np.stack(out)


def changed_fraction(views, plain, atol=1e-3):
    """Fraction of examples whose view differs from the plain image."""
    diff = np.abs(views - plain).reshape(len(views), -1).max(axis=1)
    return float(np.mean(diff > atol))


@pytest.fixture(scope="module")
def pretrain_off(tmp_path_factory):
    images, ids = first_batch(tmp_path_factory.mktemp("off"), *ALL_OFF)
    return images, ids, plain_images(ids)


def test_all_off_gives_the_plain_image_in_both_views(pretrain_off, tmp_path):
    images, ids, plain = pretrain_off
    assert images.shape == (32, 16, 16, 6)
    np.testing.assert_allclose(images[..., :3], plain, atol=1e-3)
    np.testing.assert_allclose(images[..., 3:], plain, atol=1e-3)
    # Same flags, same seed: the same batch (differences below are the flag's).
    again, again_ids = first_batch(tmp_path, *ALL_OFF)
    np.testing.assert_array_equal(again_ids, ids)
    np.testing.assert_array_equal(again, images)


@pytest.mark.parametrize("flag, at_least", [
    ("--color_jitter_strength=1.0", 0.5),  # p = 0.8 per view
    ("--use_blur=true", 0.3),              # p = 0.5 per view
    ("--crop_min_area=0.08", 0.9),
    ("--random_flip=true", 0.3),           # p = 0.5; digits are not symmetric
])
def test_each_pretraining_flag_changes_the_views(pretrain_off, tmp_path, flag,
                                                 at_least):
    _, ids, plain = pretrain_off
    images, new_ids = first_batch(tmp_path, *ALL_OFF, flag)
    np.testing.assert_array_equal(new_ids, ids)  # same examples, same order
    for view in (images[..., :3], images[..., 3:]):
        assert changed_fraction(view, plain) >= at_least, flag
    # The two views are augmented independently.
    assert changed_fraction(images[..., :3], images[..., 3:]) >= at_least / 2


def test_color_jitter_strength_sets_the_size_of_the_change(pretrain_off,
                                                          tmp_path):
    _, _, plain = pretrain_off
    mean_change = {}
    for strength in (0.25, 1.0):
        images, _ = first_batch(tmp_path / str(strength), *ALL_OFF,
                                f"--color_jitter_strength={strength}")
        mean_change[strength] = float(np.mean(np.abs(images[..., :3] - plain)))
    assert mean_change[1.0] > 2 * mean_change[0.25] > 0, mean_change


def test_image_size_sets_the_view_size(tmp_path):
    images, _ = first_batch(tmp_path, *ALL_OFF[1:], "--image_size=24")
    assert images.shape == (32, 24, 24, 6)


@pytest.mark.parametrize("flag, at_least", [
    ("--crop_min_area=0.08", 0.9),
    ("--random_flip=true", 0.3),
])
def test_finetune_pipeline_takes_crop_and_flip_flags(tmp_path, flag, at_least):
    off, ids = first_batch(tmp_path / "off", "--train_mode=finetune", *ALL_OFF)
    assert off.shape == (32, 16, 16, 3)
    plain = plain_images(ids)
    np.testing.assert_allclose(off, plain, atol=1e-3)
    images, new_ids = first_batch(tmp_path / "on", "--train_mode=finetune",
                                  *ALL_OFF, flag)
    np.testing.assert_array_equal(new_ids, ids)
    assert changed_fraction(images, plain) >= at_least, flag
