"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1 match one worker."""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from tests.harness import ROOT, TINY_FLAGS, free_ports

ARGS = ["--mode=train", "--train_steps=2", "--checkpoint_steps=2",
        "--optimizer=momentum", "--learning_rate=0.1", *TINY_FLAGS]


def _command(model_dir):
    return [sys.executable, os.path.join(ROOT, "run.py"), *ARGS,
            f"--model_dir={model_dir}"]


def _weights(model_dir):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
    names = sorted(k for k in reader.get_variable_to_shape_map()
                   if k.startswith("model/") or "_trainable_variables" in k)
    return {k: reader.get_tensor(k) for k in names}


def test_two_workers_match_one_worker(tmp_path):
    single_dir, multi_dir = str(tmp_path / "single"), str(tmp_path / "multi")
    single = subprocess.run(_command(single_dir), capture_output=True,
                            text=True, timeout=300, cwd=ROOT)
    assert single.returncode == 0, single.stderr[-3000:]

    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers},
                     "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config))
        procs.append(subprocess.Popen(
            _command(multi_dir), env=env, cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    assert "2 replica(s)" in outputs[0][0]

    expected, got = _weights(single_dir), _weights(multi_dir)
    assert expected.keys() == got.keys() and expected
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5,
                                   rtol=1e-4, err_msg=name)
