"""Any Keras model as the SimCLR encoder, and Keras Applications CNNs by name.

`SimCLRModel` reads its encoder's output dict ("final_avg_pool" [B, D] at
least). `BackboneEncoder` gives that interface to any `keras.Model` mapping
images [B, H, W, 3] to a feature map [B, h, w, C] (average-pooled here) or
a vector [B, D]. `--backbone=keras_applications:NAME` builds one around a
Keras Applications CNN with `weights=None` (no download).

What such an encoder does not have, compared with the built-in ResNet:
- outputs: only "final_avg_pool"; "initial_conv", "initial_max_pool" and
  "block_group1".."block_group4" are ResNet stages and are left out (of the
  model's outputs and of exports);
- the original SimCLR checkpoint loader and fused-BN kernels (ResNet only);
- `fine_tune_after_block` 0..3 (there are no block groups to freeze): -1
  trains the whole encoder, 4 freezes it (linear evaluation).
A Keras Applications backbone built by `keras_application` takes
`batch_norm_decay` and `global_bn` (synchronised BN across replicas) into
its BatchNormalization layers; a custom model keeps the BN it was built with.
"""

import keras
import tensorflow as tf

from simclr_tf2.errors import ConfigError

RESNET = "resnet"
PREFIX = "keras_applications:"

# How images in [0, 1] become what each network's first layer expects:
#   unit   [0, 1] unchanged (custom models; the project's default).
#   0_255  x * 255: the application starts with its own Rescaling /
#          Normalization layer (include_preprocessing=True, the default).
#   tf     x * 2 - 1 ([-1, 1], keras.applications' "tf" mode).
#   torch  (x - ImageNet mean) / ImageNet std ("torch" mode).
#   caffe  RGB -> BGR, x * 255 - ImageNet mean in BGR ("caffe" mode).
INPUT_MODES = ("unit", "0_255", "tf", "torch", "caffe")
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _family(names, mode, min_size=32):
    return {name: (mode, min_size) for name in names}


# name -> (input mode, smallest image side the network accepts). The mode
# is that of the application's own `preprocess_input`, so ImageNet weights
# loaded later see the inputs they were trained on.
APPLICATIONS = {
    **_family(["ConvNeXtTiny", "ConvNeXtSmall", "ConvNeXtBase",
               "ConvNeXtLarge", "ConvNeXtXLarge"], "0_255"),
    **_family(["EfficientNetB0", "EfficientNetB1", "EfficientNetB2",
               "EfficientNetB3", "EfficientNetB4", "EfficientNetB5",
               "EfficientNetB6", "EfficientNetB7"], "0_255"),
    **_family(["EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2",
               "EfficientNetV2B3", "EfficientNetV2S", "EfficientNetV2M",
               "EfficientNetV2L"], "0_255"),
    **_family(["MobileNetV3Small", "MobileNetV3Large"], "0_255"),
    **_family(["MobileNet", "MobileNetV2", "ResNet50V2", "ResNet101V2",
               "ResNet152V2"], "tf"),
    **_family(["DenseNet121", "DenseNet169", "DenseNet201"], "torch"),
    **_family(["ResNet50", "ResNet101", "ResNet152", "VGG16", "VGG19"],
              "caffe"),
    **_family(["InceptionV3", "InceptionResNetV2"], "tf", 75),
    **_family(["Xception"], "tf", 71),
}


def scale_images(images, mode):
    """Maps images in [0, 1] to a network's expected input range.

    Args:
      images: float [B, H, W, 3] in [0, 1], RGB.
      mode: one of INPUT_MODES (see there).

    Returns:
      float [B, H, W, 3].
    """
    if mode == "unit":
        return images
    if mode == "0_255":
        return images * 255.0
    if mode == "tf":
        return images * 2.0 - 1.0
    if mode == "torch":
        return (images - tf.constant(_MEAN, images.dtype)) / tf.constant(
            _STD, images.dtype)
    if mode == "caffe":
        return images[..., ::-1] * 255.0 - tf.constant(_CAFFE_MEAN_BGR,
                                                        images.dtype)
    raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {mode!r}.")


@keras.saving.register_keras_serializable(package="simclr_tf2")
class BackboneEncoder(keras.layers.Layer):
    """A Keras model as a SimCLR encoder: images -> {"final_avg_pool": h}.

    Args:
      model: a `keras.Model` mapping float [B, H, W, 3] to a feature map
        [B, h, w, C] (global-average-pooled here, like the ResNet's) or a
        vector [B, D]. For `.keras` saving it must be serialisable (any
        functional model; a subclassed one needs `get_config` and
        registration).
      input_mode: how images in [0, 1] are scaled before `model` (one of
        INPUT_MODES; "unit" passes them unchanged).
      min_image_size: smallest side `model` accepts; smaller static inputs
        raise a ValueError naming it.
      **kwargs: `keras.layers.Layer` arguments (name, dtype, trainable).
    """

    def __init__(self, model: keras.Model, input_mode: str = "unit",
                 min_image_size: int = 1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model):
            raise TypeError(f"model must be a keras.Model, got {type(model).__name__}.")
        if input_mode not in INPUT_MODES:
            raise ValueError(
                f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}.")
        self.model = model
        self.input_mode = input_mode
        self.min_image_size = min_image_size

    def build(self, input_shape):
        if not self.model.built:
            self.model.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        """Encodes images.

        Args:
          inputs: float [B, H, W, 3] in [0, 1].
          training: BN mode.

        Returns:
          {"final_avg_pool": float32 [B, D]}.
        """
        sides = inputs.shape[1:3]
        if any(s is not None and s < self.min_image_size for s in sides):
            raise ValueError(
                f"{self.model.name} needs images of at least "
                f"{self.min_image_size} px; got {list(sides)}.")
        features = self.model(scale_images(inputs, self.input_mode),
                              training=training)
        if len(features.shape) == 4:
            features = keras.ops.mean(features, axis=(1, 2))
        elif len(features.shape) != 2:
            raise ValueError(
                f"{self.model.name} must return [B, h, w, C] or [B, D]; got "
                f"shape {features.shape}.")
        return {"final_avg_pool": keras.ops.cast(features, "float32")}

    def get_config(self):
        config = super().get_config()
        config.update(
            model=keras.saving.serialize_keras_object(self.model),
            input_mode=self.input_mode, min_image_size=self.min_image_size)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)


def application_name(backbone):
    """NAME of "keras_applications:NAME", checked.

    Raises:
      ConfigError: anything but "keras_applications:<a key of APPLICATIONS>"
        (the message lists the keys).
    """
    name = backbone[len(PREFIX):] if backbone.startswith(PREFIX) else None
    if name not in APPLICATIONS:
        raise ConfigError(
            f"unknown --backbone={backbone}; use 'resnet' or "
            f"'{PREFIX}NAME' with NAME one of {', '.join(sorted(APPLICATIONS))}.")
    return name


def with_batch_norm(app, momentum, synchronized):
    """A functional model rebuilt (fresh weights) with other BN settings.

    Args:
      app: a functional `keras.Model` (e.g. a Keras Applications CNN).
      momentum: every BatchNormalization layer's momentum.
      synchronized: every BatchNormalization layer's `synchronized` (batch
        statistics over all replicas).

    Returns:
      A new model of the same architecture and newly initialised weights.
    """
    config = app.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer["config"].update(momentum=momentum, synchronized=synchronized)
    return app.__class__.from_config(config)


def keras_application(name: str, *, batch_norm_decay: float | None = None,
                      global_bn: bool = False, **app_kwargs) -> "BackboneEncoder":
    """A Keras Applications CNN (weights=None) as a `BackboneEncoder`.

    The network is built without its classifier, on [None, None, None, 3]
    inputs (any side >= its minimum), and fed images scaled as its own
    `preprocess_input` would (see APPLICATIONS); networks starting with a
    Rescaling layer (EfficientNet, MobileNetV3, ConvNeXt) get [0, 255].

    Args:
      name: a key of APPLICATIONS, e.g. "EfficientNetV2B0".
      batch_norm_decay: momentum of every BatchNormalization layer (None:
        the application's own, 0.99 for most).
      global_bn: synchronise BN statistics across replicas.
      **app_kwargs: more constructor arguments (e.g. alpha=0.75 for
        MobileNets).

    Returns:
      A `BackboneEncoder` named "backbone".

    Raises:
      ConfigError: unknown name.
    """
    application_name(PREFIX + name)
    mode, min_size = APPLICATIONS[name]
    app = getattr(keras.applications, name)(
        include_top=False, weights=None, input_shape=(None, None, 3),
        **app_kwargs)
    if batch_norm_decay is not None or global_bn:
        app = with_batch_norm(
            app, 0.99 if batch_norm_decay is None else batch_norm_decay,
            bool(global_bn))
    return BackboneEncoder(app, input_mode=mode, min_image_size=min_size,
                           name="backbone")


def from_model_config(model_cfg):
    """The encoder of `--backbone=keras_applications:NAME` (see build.py)."""
    return keras_application(application_name(model_cfg.backbone),
                             batch_norm_decay=model_cfg.batch_norm_decay,
                             global_bn=model_cfg.global_bn)


def check_image_size(backbone, image_size):
    """Raises ConfigError when image_size is below the backbone's minimum."""
    if backbone == RESNET:
        return
    name = application_name(backbone)
    minimum = APPLICATIONS[name][1]
    if image_size < minimum:
        raise ConfigError(
            f"--backbone={backbone} needs --image_size >= {minimum} "
            f"(got {image_size}); raise --image_size.")


def check_fine_tune_after_block(fine_tune_after_block):
    """Raises ConfigError for 0..3, which name ResNet block groups."""
    if fine_tune_after_block not in (-1, 4):
        raise ConfigError(
            f"--fine_tune_after_block={fine_tune_after_block} names a ResNet "
            "block group; with a Keras Applications or custom backbone use -1 "
            "(fine-tune everything) or 4 (freeze the encoder).")


def set_fine_tune_after_block(encoder, fine_tune_after_block):
    """Freezes a `BackboneEncoder`: -1 trains all of it, 4 none of it.

    Frozen layers run BN in inference mode (Keras 3 `trainable=False`).

    Raises:
      ConfigError: 0..3 (see check_fine_tune_after_block).
    """
    check_fine_tune_after_block(fine_tune_after_block)
    encoder.trainable = fine_tune_after_block == -1
