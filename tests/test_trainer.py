"""Tests of simclr_tf2/training/experiment.py and trainer.py on a tiny digits run."""

import json
import math
import os

import pytest
import tensorflow as tf

from simclr_tf2 import tasks
from simclr_tf2.training.experiment import Experiment
from simclr_tf2.rundir import recorded_final_step
from simclr_tf2.training.trainer import Trainer
from tests.harness import tiny_config, tiny_experiment


def test_experiment_plans_steps_and_compiles_the_configured_task(tmp_path):
    experiment = tiny_experiment(tmp_path, train_epochs=2, checkpoint_epochs=1,
                                 temperature=0.3)
    per_epoch = round(experiment.num_train_examples / 32)
    assert experiment.total_steps == math.ceil(2 * experiment.num_train_examples / 32)
    assert experiment.checkpoint_steps == per_epoch
    task = experiment.model.task
    assert task is experiment.task
    assert isinstance(task, tasks.PretrainTask) and task.temperature == 0.3
    assert task.weight_decay.optimizer_decays  # LARS by default.
    assert experiment.global_step == 0 and experiment.is_chief


def test_task_from_config_reads_the_loss_and_distillation_sections(tmp_path):
    config = tiny_config(tmp_path, optimizer="momentum", hidden_norm=False,
                         weight_decay=0.01)
    task = tasks.from_config(config)
    assert isinstance(task, tasks.PretrainTask) and not task.hidden_norm
    assert task.weight_decay.coefficient == 0.01
    assert not task.weight_decay.optimizer_decays
    distill = tasks.from_config(
        tiny_config(tmp_path, train_mode="distill", distill_temperature=2.0,
                    distill_label_weight=0.5), teacher=lambda x: x)
    assert isinstance(distill, tasks.DistillTask)
    assert (distill.distill_temperature, distill.distill_label_weight) == (2.0, 0.5)


def test_batch_not_divisible_by_replicas_is_refused(tmp_path):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with pytest.raises(ValueError, match="multiple of 2"):
        Experiment(tiny_config(tmp_path, train_batch_size=33), strategy)


def test_trainer_trains_checkpoints_and_records_the_final_step(tmp_path):
    lines = []
    experiment = tiny_experiment(tmp_path, lines, train_steps=3,
                                 checkpoint_steps=2)
    trainer = Trainer(experiment)
    before = [v.numpy().copy() for v in experiment.model.trainable_variables]
    trainer.train()
    assert experiment.global_step == 3
    assert recorded_final_step(str(tmp_path)) == 3
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-3")
    assert any(line.startswith("step 3/3") for line in lines)
    after = experiment.model.trainable_variables
    assert any((b != a.numpy()).any() for b, a in zip(before, after))
    # A second trainer on the same model_dir resumes and has nothing to do.
    again = tiny_experiment(tmp_path, lines, train_steps=3, checkpoint_steps=2)
    Trainer(again).train()
    assert again.global_step == 3
    assert any("nothing to train" in line for line in lines)
    with open(os.path.join(tmp_path, "training_done.json")) as f:
        assert json.load(f) == {"final_step": 3}
