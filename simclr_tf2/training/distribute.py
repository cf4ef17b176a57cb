"""Choosing the tf.distribute strategy: one device, mirrored, multi-worker, TPU."""

import json
import logging
import os

import tensorflow as tf

from simclr_tf2.errors import ConfigError


def configure_logical_cpus(count):
    """Splits the first CPU into `count` logical devices (before TF starts).

    Args:
      count: number of logical devices (>= 2 to have any effect).

    Raises:
      ValueError: if TF already initialised its devices.
    """
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as err:
        existing = len(tf.config.list_logical_devices("CPU"))
        if existing != count:
            raise ValueError(
                f"cannot split the CPU into {count} devices after TensorFlow "
                f"started ({existing} exist): {err}") from err


def _tf_config_workers():
    """Number of workers named by the TF_CONFIG environment variable."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({err}); fix or unset it.") from err
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def make_strategy(use_tpu=False, tpu_name=None, tpu_zone=None,
                  gcp_project=None, master=None, num_logical_cpu_devices=0):
    """Builds the strategy the flags ask for.

    Order of precedence: TPU (use_tpu), multi-worker (TF_CONFIG with more than
    one task), mirrored over logical CPUs (num_logical_cpu_devices > 1),
    mirrored over local GPUs (more than one), else the default strategy.

    Returns:
      A `tf.distribute.Strategy`.
    """
    if use_tpu:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=tpu_name or master, zone=tpu_zone, project=gcp_project)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if _tf_config_workers() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if num_logical_cpu_devices > 1:
        configure_logical_cpus(num_logical_cpu_devices)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices[:num_logical_cpu_devices])
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    if gpus:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    logging.info("Training on one CPU device.")
    return tf.distribute.get_strategy()


def task_info(strategy):
    """(is_chief, task_id) of this process under `strategy`.

    Only multi-worker strategies have non-chief tasks; the chief is the
    'chief' task or, without one, worker 0.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    task_id = getattr(resolver, "task_id", 0) or 0
    if task_type is None or isinstance(strategy, tf.distribute.TPUStrategy):
        return True, 0
    cluster = resolver.cluster_spec().as_dict()
    if "chief" in cluster:
        return task_type == "chief", task_id
    return task_type == "worker" and task_id == 0, task_id
