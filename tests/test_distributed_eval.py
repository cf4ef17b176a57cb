"""Evaluation on 2 replicas gives the one-device result (same weights)."""

import pytest
import tensorflow as tf

from simclr_tf2.training.evaluator import Evaluator
from simclr_tf2.training.experiment import Experiment
from tests.harness import tiny_config


def test_two_replica_evaluation_equals_one_device(tmp_path, two_replica_strategy):
    results = {}
    for name, strategy in (("one", tf.distribute.get_strategy()),
                           ("two", two_replica_strategy)):
        # finetune: the classifier reads the encoder; the same seed gives the
        # same initial weights on both.
        config = tiny_config(tmp_path / name, train_mode="finetune",
                             eval_batch_size=50, eval_steps=3)
        experiment = Experiment(config, strategy, printer=lambda _: None)
        results[name] = Evaluator(experiment).evaluate()
    one, two = results["one"], results["two"]
    assert set(one) == set(two)
    # 150 examples: accuracies are multiples of 1/150, and not trivial.
    assert 0.0 < one["eval/label_top_5_accuracy"] < 1.0
    for key in one:
        assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), key
