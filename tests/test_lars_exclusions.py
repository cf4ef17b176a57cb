"""Which variables of a real SimCLRModel LARS decays and adapts.

The expected sets are derived from what each variable is (a batch-norm
gamma/beta, a bias, or a parameter of the supervised head), not from layer
names, and compared with what one optimizer step actually does: a layer
renamed so that its path no longer matches an exclusion pattern turns these
red instead of silently decaying batch-norm weights.
"""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import optim
from tests import harness

ARCHITECTURES = {
    "r18": dict(resnet_depth=18, width_multiplier=0.125),
    "r50_sk_se": dict(resnet_depth=50, width_multiplier=0.0625, sk_ratio=0.0625,
                      se_ratio=0.25),
}


def _expected_excluded(model):
    """Paths of batch-norm, bias and supervised-head variables."""
    head = {id(v) for v in model.supervised_head.trainable_variables}
    return {optim.variable_path(v) for v in model.trainable_variables
            if v.name in ("gamma", "beta", "bias") or id(v) in head}


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def model(request):
    # Pretraining with linear eval: encoder, projection head and classifier.
    model = harness.make_model("pretrain", num_classes=3, compile=False,
                               **ARCHITECTURES[request.param])
    rng = np.random.default_rng(0)
    for v in model.trainable_variables:  # Non-zero everywhere (betas, biases).
        v.assign(rng.uniform(0.5, 1.5, size=v.shape).astype(np.float32))
    return model


def _one_step(model, weight_decay, gradient_fn):
    """Paths -> (before, after) of one LARS step with the given gradients."""
    variables = model.trainable_variables
    before = [v.numpy().copy() for v in variables]
    optimizer = optim.build_optimizer("lars", 1.0, momentum=0.9,
                                      weight_decay=weight_decay)
    optimizer.build(variables)
    optimizer.apply_gradients(
        [(gradient_fn(v), v) for v in variables])
    out = {optim.variable_path(v): (b, v.numpy().copy())
           for v, b in zip(variables, before)}
    for v, b in zip(variables, before):
        v.assign(b)
    return out


def test_excluded_set_is_batch_norm_biases_and_classifier(model):
    expected = _expected_excluded(model)
    paths = [optim.variable_path(v) for v in model.trainable_variables]
    # The derivation itself is not empty or trivial on these models.
    assert any(p.endswith("gamma") for p in expected)
    assert any("head_supervised" in p and p.endswith("kernel") for p in expected)
    assert any(p.endswith("kernel") for p in set(paths) - expected)
    # Zero gradients: only weight decay moves a variable.
    step = _one_step(model, 0.5, tf.zeros_like)
    decayed = {p for p, (b, a) in step.items() if not np.array_equal(b, a)}
    assert decayed == set(paths) - expected


def test_excluded_set_gets_no_trust_ratio(model):
    expected = _expected_excluded(model)
    # No decay, gradient 1: an unadapted variable moves by exactly lr = 1;
    # an adapted one by eeta * ||w|| / ||g|| (about 1e-3 here).
    step = _one_step(model, 0.0, tf.ones_like)
    unadapted = {p for p, (b, a) in step.items()
                 if np.allclose(b - a, 1.0, atol=1e-5)}
    assert unadapted == expected


@pytest.mark.parametrize("optimizer", ["lars", "momentum"])
def test_weight_decay_loss_chooses_the_right_variables(model, optimizer):
    variables = model.trainable_variables
    head = {id(v) for v in model.supervised_head.trainable_variables}
    if optimizer == "lars":  # LARS decays the rest itself.
        chosen = [v for v in variables if id(v) in head and v.name == "kernel"]
    else:  # Every variable but batch norm's, biases included.
        chosen = [v for v in variables if v.name not in ("gamma", "beta")]
    expected = 0.01 * sum(0.5 * float(np.sum(np.square(v.numpy())))
                          for v in chosen)
    policy = optim.weight_decay_policy(optimizer, 0.01)
    np.testing.assert_allclose(float(policy.training_loss(variables)),
                               expected, rtol=1e-5)
