"""Runs run.py unchanged, recording what reaches each training step.

    python tests/train_step_probe.py OUT.json [run.py flags...]

A user's command line, with one addition: `keras.Model.fit` (a Keras API,
not project code) is wrapped so that the model's `train_step` first records
the "id" and "label" of every example of its batch. At exit, OUT.json holds
{"steps": [{"id": [...], "label": [...]}, ...], "batch_keys": [...]}: the
steps in the order they ran and the keys of their batches.
Nothing of the project is imported here, so this does not change when
library modules move.
"""

import atexit
import json
import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    out_path, argv = sys.argv[1], sys.argv[2:]
    import keras
    import numpy as np
    import tensorflow as tf

    steps = []
    batch_keys = set()

    def record(ids, labels):
        steps.append({"id": np.asarray(ids).tolist(),
                      "label": np.asarray(labels).tolist()})
        return np.int64(0)

    original_fit = keras.Model.fit

    def fit(self, *args, **kwargs):
        inner = self.train_step

        def train_step(data):
            batch_keys.update(data)  # Known when the step is traced.
            done = tf.py_function(record, [data["id"], data["label"]], tf.int64)
            with tf.control_dependencies([done]):
                data = tf.nest.map_structure(tf.identity, data)
            return inner(data)

        self.train_step = train_step
        self.train_function = None  # rebuilt with the recording step
        return original_fit(self, *args, **kwargs)

    keras.Model.fit = fit

    def dump():
        with open(out_path, "w") as f:
            json.dump({"steps": steps, "batch_keys": sorted(batch_keys)}, f)

    atexit.register(dump)
    sys.argv = [os.path.join(ROOT, "run.py"), *argv]
    sys.path.insert(0, ROOT)
    runpy.run_path(os.path.join(ROOT, "run.py"), run_name="__main__")


if __name__ == "__main__":
    main()
