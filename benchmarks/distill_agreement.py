"""Where a distilled student differs from its teacher, and how sure the teacher is.

A student trained only on a teacher's soft labels can beat the teacher only
on test images where it disagrees with it. This script measures, for one
teacher (a fine-tuned run) and its distilled student (both model_dirs or
exports of run.py, classifying the same split):

  teacher on the training images  top-1 of its argmax against the true
           labels on all training images and on those outside the
           fine-tuning label subset (the soft labels the student learns),
           its mean largest probability and the share of images where that
           probability exceeds 0.99 (how close to one-hot the targets are);
  on the test images  teacher and student top-1, their agreement, the
           images the student fixes (teacher wrong, student right) and
           breaks (teacher right, student wrong); fixed - broken is the
           student's gain in images;
  per class  the teacher's training-image top-1 by true class.

Inputs are un-augmented (eval preprocessing). Prints the figures, writes
JSON:

    python benchmarks/distill_agreement.py \
        --teacher=/runs/claims/ft1_pre3_l1_s0 \
        --student=/runs/claims/distill1_long_s0 --out=agreement_s0.json
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import scipy.special  # noqa: E402

CONFIDENT = 0.99


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", required=True,
                        help="fine-tuned model_dir (or its saved_model/<step>)")
    parser.add_argument("--student", required=True,
                        help="distilled model_dir (or its saved_model/<step>)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--label_subset_file", default=None,
                        help="the teacher's labelled ids (default: "
                             "TEACHER/label_subset.txt)")
    return parser.parse_args(argv)


def teacher_targets(teacher_logits, labels, labelled):
    """How right and how sure the teacher's soft labels are.

    Args:
      teacher_logits: float [N, C] on the training images.
      labels: int [N] true labels.
      labelled: bool [N], True for the images whose label the teacher was
        fine-tuned on.

    Returns:
      dict of floats: top1_all, top1_unlabelled, mean_max_prob,
      share_confident (largest probability > CONFIDENT), per_class_top1
      (list over classes).
    """
    probs = scipy.special.softmax(teacher_logits.astype(np.float64), axis=1)
    right = probs.argmax(axis=1) == labels
    top = probs.max(axis=1)
    classes = range(teacher_logits.shape[1])
    return {
        "top1_all": float(right.mean()),
        "top1_unlabelled": float(right[~labelled].mean()),
        "mean_max_prob": float(top.mean()),
        "share_confident": float((top > CONFIDENT).mean()),
        "per_class_top1": [float(right[labels == c].mean()) for c in classes],
    }


def agreement_on_test(teacher_logits, student_logits, labels):
    """Teacher and student on the same test images.

    Args:
      teacher_logits, student_logits: float [N, C].
      labels: int [N].

    Returns:
      dict: teacher_top1, student_top1, agreement (share of equal argmax),
      fixed and broken (image counts), n.
    """
    teacher_right = teacher_logits.argmax(axis=1) == labels
    student_right = student_logits.argmax(axis=1) == labels
    return {
        "teacher_top1": float(teacher_right.mean()),
        "student_top1": float(student_right.mean()),
        "agreement": float((teacher_logits.argmax(axis=1)
                            == student_logits.argmax(axis=1)).mean()),
        "fixed": int((~teacher_right & student_right).sum()),
        "broken": int((teacher_right & ~student_right).sum()),
        "n": int(len(labels)),
    }


def _logits(path, source, split):
    from simclr_tf2 import rundir
    from simclr_tf2.analysis import features
    export = rundir.resolve_export(path)
    if export is None:
        sys.exit(f"error: {path} holds no export; run it with "
                 "--mode=train_then_eval --export_after_eval=true first.")
    return features.split_features(export, source, split, output="logits_sup")


def main(argv=None):
    args = parse_args(argv)
    from simclr_tf2.analysis import features, probes
    from simclr_tf2.data import subsets
    from simclr_tf2.data.registry import open_source
    from simclr_tf2.errors import DataError
    start = time.time()
    source = open_source(args.dataset, args.data_dir)
    try:
        subset_ids = subsets.read_subset_file(
            args.label_subset_file or os.path.join(args.teacher, "label_subset.txt"))
    except DataError as error:
        sys.exit(f"error: {error}")
    _, train_labels, train_ids = features.split_pixels(source, "train")
    labelled = probes.subset_rows(train_ids, subset_ids)
    teacher_train, labels = _logits(args.teacher, source, "train")
    if not np.array_equal(labels, train_labels):
        sys.exit("error: the training split came back in another order; rerun.")
    teacher_test, test_labels = _logits(args.teacher, source, "test")
    student_test, _ = _logits(args.student, source, "test")
    result = {
        "teacher": os.path.abspath(args.teacher),
        "student": os.path.abspath(args.student),
        "labelled_images": int(labelled.sum()),
        "train_targets": teacher_targets(teacher_train, labels, labelled),
        "test": agreement_on_test(teacher_test, student_test, test_labels),
        "seconds": round(time.time() - start, 1),
    }
    targets, test = result["train_targets"], result["test"]
    print(f"teacher soft labels on {len(labels)} training images: top-1 "
          f"{targets['top1_all']:.4f} (outside the {result['labelled_images']} "
          f"labelled: {targets['top1_unlabelled']:.4f}); mean largest probability "
          f"{targets['mean_max_prob']:.3f}, > {CONFIDENT} on "
          f"{targets['share_confident']:.1%}")
    print("  per class: " + " ".join(f"{c}:{v:.2f}" for c, v in
                                     enumerate(targets["per_class_top1"])))
    print(f"test ({test['n']} images): teacher {test['teacher_top1']:.4f}, student "
          f"{test['student_top1']:.4f}, agreement {test['agreement']:.4f}; student "
          f"fixes {test['fixed']}, breaks {test['broken']} "
          f"(net {test['fixed'] - test['broken']:+d})")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
