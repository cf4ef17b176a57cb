"""Loading a distillation teacher from a SavedModel or a fine-tuning model_dir."""


import tensorflow as tf

from simclr_tf2.rundir import pinning
from simclr_tf2 import rundir
from simclr_tf2.errors import DataError


class Teacher:
    """A frozen classifier: images [B, S, S, 3] in [0, 1] -> logits [B, C].

    Wraps any SavedModel with the hub-style callable of the contract
    (`m(images, trainable=False)` returning a dict with "logits_sup"),
    including SavedModels written by the original SimCLR TF2 code. It always
    runs in inference mode (moving BN statistics), and no gradient reaches it.

    Args:
      path: the SavedModel directory.
      image_size: the student's input side S, used to probe the teacher.
    """

    def __init__(self, path, image_size):
        self.path = path
        self.module = tf.saved_model.load(path)
        probe = self(tf.zeros([1, image_size, image_size, 3]))
        self.num_classes = int(probe.shape[-1])

    def __call__(self, images):
        outputs = self.module(images, trainable=False)
        if not isinstance(outputs, dict) or "logits_sup" not in outputs:
            raise DataError(
                f"teacher {self.path} returns no 'logits_sup'; export a model "
                "with a supervised head (a fine-tuned run) as the teacher.")
        return tf.stop_gradient(tf.cast(outputs["logits_sup"], tf.float32))


def resolve_teacher_path(path):
    """A SavedModel directory, or a model_dir holding one under saved_model/.

    Raises:
      DataError: one line with the fix when nothing loadable is there.
    """
    export = rundir.resolve_export(path)
    if export is None:
        raise DataError(
            f"--teacher={path} is neither a SavedModel nor a model_dir with "
            "saved_model/<step>/; pass a fine-tuned run's model_dir (after "
            "--mode=train_then_eval) or export one with python -m export.")
    return export


def load_teacher(path, image_size):
    """Loads the teacher named by --teacher. See `resolve_teacher_path`."""
    # [original] an original SimCLR model_dir / ckpt-N prefix: read its checkpoint.
    from simclr_tf2.original import hooks as original_hooks
    teacher = original_hooks.teacher_from_original(path, image_size)
    if teacher is not None:
        return teacher
    # [rotation] a model_dir whose trainer replaces saved_model/<step>/
    # (--keep_hub_module_max): an export deleted while loading is a race,
    # not the user's error; take the newest again (bounded).
    for attempt in range(pinning.RETRIES + 1):
        export = resolve_teacher_path(path)
        try:
            return Teacher(export, image_size)
        except (OSError, ValueError, tf.errors.OpError):
            if export == path or tf.io.gfile.exists(export) \
                    or attempt == pinning.RETRIES:
                raise
