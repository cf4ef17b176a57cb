"""benchmarks/distill_agreement.py: the teacher's targets and the test agreement."""

import numpy as np
import pytest

from tests import harness

agreement = harness.benchmark_module("distill_agreement")


def test_teacher_targets_score_the_argmax_and_the_confidence():
    # Rows: sure and right, sure and wrong, unsure and right, unsure and wrong.
    logits = np.array([[10.0, 0.0], [0.0, 10.0], [0.2, 0.0], [0.0, 0.2]])
    labels = np.array([0, 0, 0, 0])
    labelled = np.array([True, False, False, False])
    targets = agreement.teacher_targets(logits, labels, labelled)
    assert targets["top1_all"] == 0.5
    assert targets["top1_unlabelled"] == pytest.approx(1 / 3)
    assert targets["share_confident"] == 0.5
    sure, unsure = 1 / (1 + np.exp(-10.0)), 1 / (1 + np.exp(-0.2))
    assert targets["mean_max_prob"] == pytest.approx((sure + unsure) / 2)
    labels_by_class = np.array([0, 1, 1, 1])
    per_class = agreement.teacher_targets(logits, labels_by_class, labelled)["per_class_top1"]
    assert per_class == pytest.approx([1.0, 2 / 3])


def test_test_agreement_counts_what_the_student_fixes_and_breaks():
    labels = np.array([0, 1, 2, 0, 1])
    eye = np.eye(3)
    teacher = eye[[0, 0, 2, 1, 1]]   # wrong on rows 1 and 3
    student = eye[[0, 1, 1, 1, 1]]   # fixes row 1, breaks row 2, keeps row 3 wrong
    result = agreement.agreement_on_test(teacher, student, labels)
    assert result == {"teacher_top1": 0.6, "student_top1": 0.6, "agreement": 0.6,
                      "fixed": 1, "broken": 1, "n": 5}
