"""Tests for simclr_tf2.optim: LARS vs a numpy reference, schedules, factory."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_tf2 import optim
from simclr_tf2.optim import EXCLUDE_FROM_WEIGHT_DECAY
from simclr_tf2.optim import LARS
from simclr_tf2.optim import WarmupCosineDecay

# Large enough that a missing trust ratio / weight decay moves the result far
# beyond float32 round-off.
LR, MOMENTUM, WD, EETA = 0.5, 0.9, 0.1, 0.05
ALL = [True] * 6


def _np_lars_step(w, g, v, use_wd, use_adapt, lr=LR, m=MOMENTUM, wd=WD,
                  eeta=EETA, classic=True):
    """One LARS step in plain numpy; returns (new_w, new_v)."""
    if use_wd:
        g = g + wd * w

    def ratio(u):
        w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(u)
        if use_adapt and w_norm > 0 and u_norm > 0:
            return eeta * w_norm / u_norm
        return 1.0

    if classic:
        v = m * v + lr * ratio(g) * g
        return w - v, v
    v = m * v + g
    return w - lr * ratio(v) * v, v


def _model():
    """A tiny model whose variable paths name their layers."""
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, name="dense"),
            keras.layers.BatchNormalization(name="batch_normalization"),
            keras.layers.Dense(2, name="head_supervised"),
        ],
        name="simclr",
    )
    rng = np.random.default_rng(1)
    for v in model.trainable_variables:  # Non-zero biases/beta too.
        v.assign(rng.normal(size=v.shape).astype("float32"))
    return model


def _grads(seed):
    rng = np.random.default_rng(seed)
    shapes = [(4, 3), (3,), (3,), (3,), (3, 2), (2,)]
    return [rng.normal(size=s).astype("float32") for s in shapes]


def _np_reference(variables, grads_per_step, use_wd, use_adapt, **kwargs):
    ws = [np.asarray(v, "float64") for v in variables]
    vs = [np.zeros_like(w) for w in ws]
    for grads in grads_per_step:
        for i, g in enumerate(grads):
            ws[i], vs[i] = _np_lars_step(
                ws[i], g.astype("float64"), vs[i], use_wd[i], use_adapt[i],
                **kwargs)
    return ws


def _assert_close(variables, expected):
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(np.asarray(v), e, rtol=1e-5, atol=1e-6)


def _lars(**kwargs):
    args = dict(momentum=MOMENTUM, weight_decay=WD, eeta=EETA)
    args.update(kwargs)
    return LARS(LR, **args)


def test_variable_paths_contain_layer_names():
    paths = [v.path for v in _model().trainable_variables]
    assert paths == [
        "simclr/dense/kernel", "simclr/dense/bias",
        "simclr/batch_normalization/gamma", "simclr/batch_normalization/beta",
        "simclr/head_supervised/kernel", "simclr/head_supervised/bias",
    ]


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("classic", [True, False])
def test_lars_matches_numpy_without_exclusions(steps, classic):
    variables = _model().trainable_variables
    grads = [_grads(s) for s in range(steps)]
    expected = _np_reference(variables, grads, ALL, ALL, classic=classic)
    opt = _lars(classic_momentum=classic)
    for step_grads in grads:
        opt.apply(step_grads, variables)
    _assert_close(variables, expected)


@pytest.mark.parametrize("steps", [1, 3])
def test_lars_exclusions_give_plain_momentum(steps):
    variables = _model().trainable_variables
    grads = [_grads(s) for s in range(steps)]
    # Only simclr/dense/kernel is neither bias, batch norm nor head.
    included = [True, False, False, False, False, False]
    expected = _np_reference(variables, grads, included, included)
    plain = _np_reference(variables, grads, [False] * 6, [False] * 6)
    opt = _lars(exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY)
    for step_grads in grads:
        opt.apply(step_grads, variables)
    _assert_close(variables, expected)
    # Excluded variables follow plain momentum SGD; the kernel does not.
    _assert_close(variables[1:], plain[1:])
    assert not np.allclose(variables[0].numpy(), plain[0], atol=1e-3)


def test_layer_adaptation_exclusion_defaults_and_overrides():
    assert _lars(exclude_from_weight_decay=["bias"]
                 ).adaptation_exclude_patterns == ("bias",)
    opt = _lars(exclude_from_weight_decay=["bias"],
                exclude_from_layer_adaptation=[r"kernel$"])
    variables = _model().trainable_variables
    use_wd = ["bias" not in v.path for v in variables]
    use_adapt = [not v.path.endswith("kernel") for v in variables]
    expected = _np_reference(variables, [_grads(0)], use_wd, use_adapt)
    opt.apply(_grads(0), variables)
    _assert_close(variables, expected)


def test_zero_gradient_and_zero_weight_use_trust_ratio_one():
    w_zero = keras.Variable(np.zeros((3,), "float32"), name="w_zero")
    w_ones = keras.Variable(np.ones((3,), "float32"), name="w_ones")
    g = np.array([1.0, -2.0, 0.5], "float32")
    opt = _lars(weight_decay=0.0)
    opt.apply([g, np.zeros((3,), "float32")], [w_zero, w_ones])
    # ||w|| = 0: r = 1, so w = 0 - lr * g (not 0, not NaN).
    np.testing.assert_allclose(w_zero.numpy(), -LR * g, rtol=1e-6)
    # ||g|| = 0: r = 1 and no update.
    np.testing.assert_array_equal(w_ones.numpy(), np.ones(3))


def test_weight_decay_applied_exactly_once():
    w0 = np.array([1.0, -2.0, 3.0], "float32")
    plain = keras.Variable(w0, name="plain")
    adapted = keras.Variable(w0, name="adapted")
    opt = LARS(LR, momentum=0.0, weight_decay=WD, eeta=EETA,
               exclude_from_layer_adaptation=["plain"])
    assert opt.weight_decay is None  # The base class must not decay too.
    zero = np.zeros((3,), "float32")
    opt.apply([zero, zero], [plain, adapted])
    # No adaptation: g = wd * w, w -= lr * g.
    np.testing.assert_allclose(plain.numpy(), w0 * (1 - LR * WD), rtol=1e-6)
    # Adaptation: r = eeta / wd, so w -= lr * eeta * w.
    np.testing.assert_allclose(adapted.numpy(), w0 * (1 - LR * EETA),
                               rtol=1e-6)


def test_get_config_round_trip():
    opt = LARS(WarmupCosineDecay(4.8, 10, 100), momentum=0.8,
               weight_decay=1e-6, eeta=0.002,
               exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY,
               classic_momentum=False, global_clipnorm=1.0)
    config = opt.get_config()
    assert config["weight_decay"] == 1e-6
    assert config["exclude_from_weight_decay"] == list(
        EXCLUDE_FROM_WEIGHT_DECAY)
    assert LARS.from_config(opt.get_config()).get_config() == config
    revived = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(revived, LARS)
    assert revived.get_config() == config
    assert revived.weight_decay is None
    assert float(revived.learning_rate) == 0.0  # Schedule at step 0.


@pytest.mark.parametrize("jit_compile", [False, True])
def test_lars_in_tf_function(jit_compile):
    variables = _model().trainable_variables
    grads = [_grads(s) for s in range(2)]
    use = ["bias" not in v.path for v in variables]
    expected = _np_reference(variables, grads, use, use)
    opt = _lars(exclude_from_weight_decay=["bias"])

    @tf.function(jit_compile=jit_compile)
    def step(step_grads):
        opt.apply(step_grads, variables)

    for step_grads in grads:
        step([tf.constant(g) for g in step_grads])
    _assert_close(variables, expected)


def test_lars_mirrored_strategy_matches_single_device():
    ga, gb = _grads(10), _grads(11)
    single = _model().trainable_variables
    opt = _lars(exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY)
    for _ in range(2):
        opt.apply([a + b for a, b in zip(ga, gb)], single)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = _model()
        dist_opt = _lars(exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY)
        dist_opt.build(model.trainable_variables)

    def replica_step():
        ctx = tf.distribute.get_replica_context()
        first = tf.equal(ctx.replica_id_in_sync_group, 0)
        grads = [tf.where(first, a, b) for a, b in zip(ga, gb)]
        dist_opt.apply(grads, model.trainable_variables)  # Sums replicas.

    @tf.function
    def step():
        strategy.run(replica_step)

    for _ in range(2):
        step()
    _assert_close(model.trainable_variables, [v.numpy() for v in single])


def test_loss_scale_optimizer_wrapping_lars():
    variables = _model().trainable_variables
    expected = _np_reference(variables, [_grads(0)], ALL, ALL)
    opt = keras.optimizers.LossScaleOptimizer(_lars())
    scale = opt.initial_scale  # Dynamic scale before the first step.
    opt.apply([g * scale for g in _grads(0)], variables)
    assert float(opt.dynamic_scale.numpy()) == scale
    _assert_close(variables, expected)


def test_warmup_cosine_decay_values():
    schedule = WarmupCosineDecay(2.0, warmup_steps=10, total_steps=110)
    values = {s: float(schedule(s)) for s in (0, 5, 10, 35, 60, 110, 111, 500)}
    assert values[0] == 0.0
    assert values[5] == pytest.approx(1.0)
    assert values[10] == pytest.approx(2.0)
    assert values[35] == pytest.approx(1.0 + math.cos(math.pi / 4), rel=1e-6)
    assert values[60] == pytest.approx(1.0, rel=1e-6)
    assert values[110] == 0.0 and values[111] == 0.0 and values[500] == 0.0
    assert float(WarmupCosineDecay(2.0, 0, 10)(0)) == pytest.approx(2.0)
    clone = WarmupCosineDecay.from_config(schedule.get_config())
    assert float(clone(tf.constant(35, tf.int64))) == values[35]


def test_learning_rate_scaling():
    assert optim.scale_learning_rate(0.3, 4096, "linear") == pytest.approx(4.8)
    assert optim.scale_learning_rate(0.075, 4096, "sqrt") == pytest.approx(4.8)
    assert optim.scale_learning_rate(0.3, 512, "linear") == pytest.approx(0.6)
    with pytest.raises(ValueError, match="cubic"):
        optim.scale_learning_rate(0.3, 4096, "cubic")


def test_warmup_and_total_steps():
    assert optim.warmup_and_total_steps(1281167, 4096, 10, 100) == (
        3128, 31279)
    assert optim.warmup_and_total_steps(1000, 100, 1, 10) == (10, 100)
    assert optim.warmup_and_total_steps(1000, 100, 1, 10, train_steps=7) == (
        10, 7)


def test_build_learning_rate_schedule_peaks_at_scaled_base():
    schedule = optim.build_learning_rate_schedule(
        0.075, "sqrt", batch_size=4096, num_examples=40960, warmup_epochs=1,
        train_epochs=11)
    assert (schedule.warmup_steps, schedule.total_steps) == (10, 110)
    assert float(schedule(10)) == pytest.approx(4.8)
    assert float(schedule(60)) == pytest.approx(2.4, rel=1e-6)


def test_build_optimizer():
    lars = optim.build_optimizer("lars", 0.1, momentum=0.8, weight_decay=1e-6)
    assert isinstance(lars, LARS)
    assert lars.lars_weight_decay == 1e-6 and lars.momentum == 0.8
    assert lars.wd_exclude_patterns == EXCLUDE_FROM_WEIGHT_DECAY
    sgd = optim.build_optimizer("momentum", 0.1, nesterov=True)
    assert isinstance(sgd, keras.optimizers.SGD)
    assert sgd.nesterov and sgd.momentum == 0.9
    assert isinstance(optim.build_optimizer("adam", 0.1),
                      keras.optimizers.Adam)
    with pytest.raises(ValueError, match="sgd"):
        optim.build_optimizer("sgd", 0.1)


def test_weight_decay_loss():
    variables = _model().trainable_variables
    by_path = {v.path: v.numpy() for v in variables}

    def l2(*names):
        return sum(0.5 * np.sum(by_path["simclr/" + n] ** 2) for n in names)

    lars = optim.weight_decay_loss(variables, 1e-2, "lars")
    assert lars.dtype == tf.float32
    np.testing.assert_allclose(
        lars.numpy(), 1e-2 * l2("head_supervised/kernel"), rtol=1e-6)
    momentum = optim.weight_decay_loss(variables, 1e-2, "momentum")
    np.testing.assert_allclose(momentum.numpy(), 1e-2 * l2(
        "dense/kernel", "dense/bias",
        "head_supervised/kernel", "head_supervised/bias"), rtol=1e-6)
    adam = optim.weight_decay_loss(variables, 1e-2, "adam")
    np.testing.assert_allclose(adam.numpy(), momentum.numpy())
    assert float(optim.weight_decay_loss(variables, 0.0, "momentum")) == 0.0
    assert float(optim.weight_decay_loss(variables[:4], 1e-2, "lars")) == 0.0


def test_short_runs_get_a_warmup_of_steps_not_epochs():
    # 20 epochs of 1,437 digits at batch 1024: 5 epochs are 7 steps of a
    # 29-step run; the floor raises them to min(10, 25% of 29) = 7 -> 7,
    # and 1 epoch (1 step) to 7.
    assert optim.warmup_and_total_steps(1437, 1024, 5, 20) == (7, 29)
    assert optim.warmup_and_total_steps(1437, 1024, 1, 20) == (7, 29)
    # A long run keeps its epoch warmup; a tiny one at most a quarter.
    assert optim.warmup_and_total_steps(1437, 256, 5, 60) == (28, 337)
    assert optim.warmup_and_total_steps(1437, 1024, 5, 60, train_steps=8) == (
        7, 8)
    assert optim.warmup_and_total_steps(1437, 1024, 2, 60, train_steps=8) == (
        3, 8)
    # No warmup asked: none given.
    assert optim.warmup_and_total_steps(1437, 1024, 0, 20) == (0, 29)


def test_a_step_covers_at_most_one_epoch():
    # Batch 4096 on 1,437 digits holds 2.85 copies of each image: 60 epochs
    # are 60 steps (not ceil(1437 * 60 / 4096) = 22), 5 warmup epochs 5
    # steps, raised to the floor of 10.
    assert optim.warmup_and_total_steps(1437, 4096, 5, 60) == (10, 60)
    assert optim.warmup_and_total_steps(1437, 4096, 0, 60) == (0, 60)
    # Exactly the split: one step per epoch either way; below it unchanged.
    assert optim.warmup_and_total_steps(1437, 1437, 0, 60) == (0, 60)
    assert optim.warmup_and_total_steps(1437, 1436, 0, 60) == (0, 61)
    # --train_steps still wins.
    assert optim.warmup_and_total_steps(1437, 4096, 0, 60, train_steps=22) == (0, 22)


def test_batches_larger_than_the_split_scale_like_the_split():
    assert optim.scaling_batch_size(4096, 1437) == 1437
    assert optim.scaling_batch_size(256, 1437) == 256
    assert optim.scaling_batch_size(256, 0) == 256
    big = optim.build_learning_rate_schedule(
        0.1, "sqrt", batch_size=4096, num_examples=1437, warmup_epochs=0,
        train_epochs=60)
    assert big.base_learning_rate == pytest.approx(0.1 * math.sqrt(1437))
