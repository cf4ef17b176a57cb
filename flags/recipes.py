"""Per-dataset and per-train_mode recipes: flag values used when not set.

Precedence, lowest first: flag default < dataset recipe < train_mode recipe
< a flag the user set explicitly.
"""

# The paper's ImageNet setting (Sec. 2.3, App. B): the flag defaults already
# are, except for the batch size the paper trains at.
_IMAGENET = {
    "train_batch_size": 4096,
    "image_size": 224,
    "resnet_depth": 50,
    "eval_split": "validation",
}

# The original README's CIFAR-10 command.
_CIFAR10 = {
    "train_batch_size": 512,
    "train_epochs": 1000,
    "learning_rate": 1.0,
    "weight_decay": 1e-4,
    "temperature": 0.5,
    "image_size": 32,
    "eval_split": "test",
    "resnet_depth": 18,
    "use_blur": False,
    "color_jitter_strength": 0.5,
}

# CPU-sized: a quarter-width ResNet-18 on the native 8x8 digits, so
# `python run.py --mode=train_then_eval` takes a few minutes on two CPU
# cores; chosen by the sweep in docs/results/digits.md (linear and kNN top-1
# per seed are there).
# 8 px rather than 16 px upsampled: the same information at ~2.5x the
# images/s, spent on 150 epochs instead of 60, and batch 128 for twice the
# steps. Crops keep at least 40% of the area (0.08 leaves ~2x2 original
# pixels). Adam rather than LARS: LARS leaves batch norm, biases and the
# online head to plain momentum SGD at the scaled rate, which the head cannot
# bear at batch 4096; Adam's step does not depend on the gradient's scale.
# Square-root scaling: 2.5e-4 x sqrt(128) = 2.8e-3 at the default batch and,
# with the batch capped at the split size (optim/schedule.py), 2.5e-4 x
# sqrt(1437) = 9.5e-3 at batch 4096.
_DIGITS = {
    "train_batch_size": 128,
    "train_epochs": 150,
    "optimizer": "adam",
    "learning_rate": 2.5e-4,
    "learning_rate_scaling": "sqrt",
    "weight_decay": 1e-4,
    "warmup_epochs": 5,
    "temperature": 0.2,
    "image_size": 8,
    "crop_min_area": 0.4,
    "random_flip": False,
    # The digits figures (docs/results/digits.md) are float32 runs; at 8 px
    # bfloat16 runs ~1.3x faster on an AVX512_BF16 CPU (--precision=mixed_bfloat16).
    "precision": "float32",
    "eval_split": "test",
    "eval_batch_size": 360,
    "resnet_depth": 18,
    "width_multiplier": 0.25,
    "use_blur": False,
    "color_jitter_strength": 0.5,
    "num_proj_layers": 2,
    "proj_out_dim": 64,
    "checkpoint_epochs": 25,
}

# Fashion-MNIST (28 px grey): the CIFAR recipe at its native size, with
# what won the short sweep in docs/results/fashion_mnist_sweep/: crops keep
# at least 35% of a 28 px garment (0.08 leaves a few pixels of texture), and
# on grey images the colour jitter reduces to brightness and contrast, which
# pay at full strength (1.0) where CIFAR's 0.5 is too weak.
_FASHION_MNIST = dict(_CIFAR10, image_size=28, train_epochs=200,
                      eval_batch_size=500, crop_min_area=0.35,
                      color_jitter_strength=1.0)

DATASET_RECIPES = {
    "imagenet2012": _IMAGENET,
    "cifar10": _CIFAR10,
    "cifar100": _CIFAR10,
    "digits": _DIGITS,
    "fashion_mnist": _FASHION_MNIST,
}

# Paper App. B.5: Nesterov momentum, lr 0.05 x B/256, no warmup, no weight
# decay; crop + flip only (the pipeline does that for finetune).
_FINETUNE = {
    "optimizer": "momentum",
    "nesterov": True,
    "learning_rate": 0.05,
    "learning_rate_scaling": "linear",
    "warmup_epochs": 0,
    "weight_decay": 0.0,
}

TRAIN_MODE_RECIPES = {
    "pretrain": {},
    "finetune": _FINETUNE,
    "distill": _FINETUNE,
}


def recipe_for(dataset, train_mode):
    """Merged recipe values for a dataset and train mode.

    Args:
      dataset: the --dataset value (a 'folder:' path gets no dataset recipe).
      train_mode: the --train_mode value.

    Returns:
      (values, origin): dict flag name -> value, and flag name -> a short
      label of the recipe it came from.
    """
    values, origin = {}, {}
    for label, recipe in ((f"recipe:{dataset}", DATASET_RECIPES.get(dataset, {})),
                          (f"recipe:{train_mode}",
                           TRAIN_MODE_RECIPES.get(train_mode, {}))):
        values.update(recipe)
        origin.update({name: label for name in recipe})
    return values, origin
