"""The claims suite's strongest raw-pixel baseline: an RBF-kernel SVM.

One row per --out (no seed), cached in OUT/svm_pixels.done.json and
recomputed only when its settings change.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fashion_mnist as suite  # noqa: E402
from claims_arms import BUDGETS  # noqa: E402

if suite.ROOT not in sys.path:  # simclr_tf2 for the pixels.
    sys.path.append(suite.ROOT)

# The RBF-kernel SVM on raw pixels (scikit-learn SVC): C=10 as in Xiao et
# al. 2017's best SVC; gamma="scale" = 1 / (pixels x pixel variance).
SVM = {"C": 10.0, "gamma": "scale"}


def svm_top1(train_x, train_y, test_x, test_y, c=SVM["C"], gamma=SVM["gamma"]):
    """Test top-1 of scikit-learn's SVC (RBF kernel) on rows of pixels."""
    import numpy as np
    from sklearn.svm import SVC
    classifier = SVC(C=c, kernel="rbf", gamma=gamma).fit(train_x, train_y)
    return float(np.mean(classifier.predict(test_x) == test_y))


def svm_settings(train_examples, budget="cpu"):
    """What the cached row depends on (a rerun with other settings recomputes)."""
    split = dict(flag[2:].split("=", 1) for flag in BUDGETS[budget]["probe_split"])
    return {"train_split": split.get("train_split", "train"),
            "eval_split": split.get("eval_split", "test"),
            "train_examples": train_examples, "seed": 0, **SVM}


def load_pixels(settings, data_dir=None):
    """(train_x, train_y, test_x, test_y) of raw pixels in [0, 1], one channel
    when an image's channels are copies; train rows subsampled (seed 0,
    without replacement) to settings["train_examples"] when smaller."""
    import numpy as np
    from simclr_tf2.analysis import features
    from simclr_tf2.data.registry import open_source
    source = open_source("fashion_mnist", data_dir)
    train_x, train_y, _ = features.split_pixels(source, settings["train_split"])
    test_x, test_y, _ = features.split_pixels(source, settings["eval_split"])
    if train_x.shape[1] % 3 == 0 and np.array_equal(train_x[:, 0::3], train_x[:, 1::3]):
        train_x, test_x = train_x[:, 0::3], test_x[:, 0::3]
    n = settings["train_examples"]
    if n and n < len(train_x):
        keep = np.sort(np.random.default_rng(settings["seed"]).choice(
            len(train_x), n, replace=False))
        train_x, train_y = train_x[keep], train_y[keep]
    return train_x, train_y, test_x, test_y


def svm_row(out, settings, load=load_pixels, data_dir=None):
    """The svm_pixels result: reused from OUT/svm_pixels.done.json when its
    settings match, else computed (load(settings, data_dir) gives the arrays)."""
    done_file = os.path.join(out, "svm_pixels.done.json")
    if os.path.exists(done_file):
        done = json.load(open(done_file))
        if done["settings"] == settings:
            print(f"[svm_pixels] reused ({done['seconds']} s)", flush=True)
            return done
    print(f"[svm_pixels] SVC {settings}", flush=True)
    start = time.time()
    train_x, train_y, test_x, test_y = load(settings, data_dir)
    top1 = svm_top1(train_x, train_y, test_x, test_y, settings["C"], settings["gamma"])
    row = {"run": "svm_pixels", "settings": settings, "top1": top1,
           "train_examples": int(len(train_x)), "test_examples": int(len(test_x)),
           "seconds": round(time.time() - start),
           "command": f"SVC(C={settings['C']}, kernel='rbf', gamma={settings['gamma']!r}) "
                      f"on {len(train_x)} x {train_x.shape[1]} pixels"}
    tmp = done_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(row, f, indent=2)
    os.replace(tmp, done_file)
    print(f"[svm_pixels] {row['seconds']} s | top-1 {top1:.4f}", flush=True)
    return row
