"""Behaviour of simclr_tf2/memory/ that the mutation run (benchmarks/mutation.py)
found unpinned: the buffer's state is never trained, survives get_config /
from_config and a second build; the constructors' bounds, defaults and
error lines."""

import inspect

import keras
import pytest

from simclr_tf2.memory.buffer import KeyBuffer
from simclr_tf2.memory.training import TrainingMemory


def test_key_buffer_bounds_and_error_line():
    for size, dim in ((1, 1), (1, 4), (3, 1)):  # The smallest legal buffers.
        buffer = KeyBuffer(size, dim)
        assert tuple(buffer.keys.shape) == (size, dim)
    for size, dim in ((0, 4), (4, 0), (-1, 4)):
        with pytest.raises(ValueError) as error:
            KeyBuffer(size, dim)
        assert str(error.value) == (
            f"KeyBuffer needs size > 0 and dim > 0. Received: size={size}, dim={dim}")


def test_key_buffer_state_is_never_trained_and_built_once():
    buffer = KeyBuffer(4, 2)
    assert buffer.built is True and buffer.trainable is False
    assert buffer.trainable_weights == []
    assert len(buffer.non_trainable_weights) == 4
    assert not any(v.trainable for v in buffer.weights)
    keys, labels, valid = buffer()  # Calling it does not build a second set.
    assert len(buffer.weights) == 4 and tuple(keys.shape) == (4, 2)
    assert labels.numpy().tolist() == [-1] * 4 and not valid.numpy().any()


def test_key_buffer_round_trips_through_its_config():
    buffer = KeyBuffer(5, 3, name="keys_of_the_memory")
    config = buffer.get_config()
    assert config["size"] == 5 and config["dim"] == 3
    assert config["name"] == "keys_of_the_memory" and "trainable" in config
    copy = KeyBuffer.from_config(config)
    assert (copy.size, copy.dim, copy.name) == (5, 3, "keys_of_the_memory")
    assert copy.trainable is False and copy.trainable_weights == []
    assert keras.saving.get_registered_name(KeyBuffer) == "simclr_tf2>KeyBuffer"
    assert keras.saving.get_registered_object("simclr_tf2>KeyBuffer") is KeyBuffer


def test_training_memory_bounds_defaults_and_error_lines():
    defaults = inspect.signature(TrainingMemory).parameters
    assert defaults["momentum"].default == 0.999
    assert defaults["supervised"].default is False
    memory = TrainingMemory(1)
    assert (memory.size, memory.momentum, memory.supervised) == (1, 0.999, False)
    assert TrainingMemory(8, momentum=0.0).momentum == 0.0
    for size in (0, -3):
        with pytest.raises(ValueError) as error:
            TrainingMemory(size)
        assert str(error.value) == f"memory size must be > 0. Received: size={size}"
    for momentum in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError) as error:
            TrainingMemory(8, momentum=momentum)
        assert str(error.value) == (
            f"memory momentum must be in [0, 1). Received: momentum={momentum}")
