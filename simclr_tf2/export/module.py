"""The hub-style `tf.Module` an export saves: callable, variables, signatures.

The module follows the TF2 "reusable SavedModel" convention of TF Hub:

- `module(images, trainable=False)` returns the dict of named outputs; the
  Keras-style keyword `training=` is accepted too, because `hub.KerasLayer`
  passes `training=` to callables that declare it (and nothing otherwise).
- `variables`, `trainable_variables` and `regularization_losses` are plain
  attributes, so they survive saving and loading without this code.

Serving signatures (`serving_default` on float images, `serving_bytes` on
encoded JPEG/PNG bytes) are built by `serving_signatures`.
"""

import types

import tensorflow as tf

from simclr_tf2.data import augment
from simclr_tf2.optim import weight_decay_loss

SERVING_DEFAULT = "serving_default"
SERVING_BYTES = "serving_bytes"
IMAGES_INPUT = "images"
BYTES_INPUT = "image_bytes"

# The per-image vectors; what serving returns unless asked for everything.
VECTOR_OUTPUTS = ("final_avg_pool", "proj_head_input", "proj_head_output",
                  "logits_sup")

# The (trainable, training) keyword pairs traced for __call__: the hub API
# passes `trainable`, hub.KerasLayer passes `training`.
CALL_MODES = ((False, None), (True, None), (False, False), (False, True))


def validate_images(images):
    """Checks a batch of float images, statically where possible.

    Args:
      images: float32 [B, H, W, 3].

    Returns:
      The same tensor, gated on the run-time checks.

    Raises:
      ValueError: at trace time for a statically wrong rank or channel count;
        tf.errors.InvalidArgumentError at run time otherwise.
    """
    images = tf.convert_to_tensor(images)
    rank_msg = "images must be a batch of shape [batch, height, width, 3]"
    channel_msg = "images must have 3 (RGB) channels in the last axis"
    if images.shape.rank is not None and images.shape.rank != 4:
        raise ValueError(f"{rank_msg}; got shape {images.shape}.")
    if images.shape.rank == 4 and images.shape[-1] not in (None, 3):
        raise ValueError(f"{channel_msg}; got shape {images.shape}.")
    checks = [tf.debugging.assert_rank(images, 4, message=rank_msg)]
    with tf.control_dependencies(checks):
        checks.append(tf.debugging.assert_equal(
            tf.shape(images)[-1], 3, message=channel_msg))
    with tf.control_dependencies(checks):
        return tf.identity(images)


def decode_and_preprocess(image_bytes, image_size):
    """Decodes encoded images and preprocesses them like evaluation.

    Args:
      image_bytes: tf.string [B], each a JPEG, PNG, GIF or BMP file.
      image_size: Python int, the side the model was trained on.

    Returns:
      float32 [B, image_size, image_size, 3] in [0, 1].
    """
    def one(data):
        # float32 decoding scales 8- and 16-bit files alike to [0, 1].
        image = tf.io.decode_image(data, channels=3, dtype=tf.float32,
                                   expand_animations=False)
        return augment.preprocess_for_eval(image, image_size)

    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    tf.debugging.assert_rank(
        image_bytes, 1, message="image_bytes must be a 1-D batch of files")
    return tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec(
        [image_size, image_size, 3], tf.float32))


def _tf_variable(variable):
    """The tf.Variable behind a Keras 3 variable (what functions capture)."""
    value = getattr(variable, "value", variable)
    if not isinstance(value, tf.Variable):
        raise TypeError(f"expected a TensorFlow-backed variable, got {variable!r}")
    return value


class SimCLRHubModule(tf.Module):
    """SimCLR encoder (+ heads) as a TF-Hub reusable SavedModel.

    The forward pass is the model's own `call`, so the export computes what
    the model computes.

    Args:
      model: a built SimCLRModel (any object whose call(images, training)
        returns the dict of named outputs and which has `projection_head`,
        `supervised_head` and `ft_proj_selector`), float32 and built outside
        any strategy (see `saved_model.export_copy`).
      include_projection_head: output `proj_head_input`/`proj_head_output`;
        without them (and when the classifier does not read a projection
        layer) the projection head's weights are not trainable variables.
      weight_decay: L2 coefficient of `regularization_losses` (0: none).
    """

    # Plain attributes, not tf.Module's computed properties: saved as such.
    variables = ()
    trainable_variables = ()
    regularization_losses = ()

    def __init__(self, model, include_projection_head=True, weight_decay=0.0):
        super().__init__(name="simclr")
        trainable = list(model.trainable_weights)
        if not include_projection_head and not (
                model.supervised_head is not None and model.ft_proj_selector):
            unused = {id(v) for v in model.projection_head.weights}
            trainable = [v for v in trainable if id(v) not in unused]
        # A plain namespace: the model is used while tracing, but only its
        # tf.Variables (below) belong in the SavedModel's object graph.
        self._net = types.SimpleNamespace(
            model=model, include_projection=include_projection_head,
            paths=([v.path for v in model.weights], [v.path for v in trainable]))
        # One trace per BN mode, shared by every __call__ keyword variant and
        # by the serving signatures (they call these as graph functions).
        spec = [tf.TensorSpec([None, None, None, 3], tf.float32)]
        self._net.infer = tf.function(lambda x: self.outputs(x, False),
                                      input_signature=spec)
        self._net.train = tf.function(lambda x: self.outputs(x, True),
                                      input_signature=spec)
        self.variables = [_tf_variable(v) for v in model.weights]
        self.trainable_variables = [_tf_variable(v) for v in trainable]
        # Random-number state (Dropout / stochastic depth in Keras
        # Applications backbones): no weight, but the training-mode trace
        # reads it, so the SavedModel must hold it.
        weights = {id(v) for v in model.weights}
        self._random_state = [_tf_variable(v) for v in model.variables
                              if id(v) not in weights]
        self.regularization_losses = []
        if weight_decay:
            # Every non-BN weight, as for SGD/Adam fine-tuning (LARS-style
            # in-optimizer decay does not travel with a SavedModel).
            self.regularization_losses.append(tf.function(
                lambda: weight_decay_loss(trainable, weight_decay, "momentum"),
                input_signature=[]))

    def outputs(self, images, training):
        """The named outputs for a batch (Python-bool `training`).

        Args:
          images: float32 [B, H, W, 3] in [0, 1].
          training: True: BN batch statistics (and moving-average updates).

        Returns:
          Dict of float32: "initial_conv", "initial_max_pool",
          "block_group1".."block_group4" [B, h, w, C], "final_avg_pool"
          [B, D], and when included "proj_head_input" [B, D],
          "proj_head_output" [B, P] and "logits_sup" [B, C].
        """
        outputs = self._net.model(validate_images(images), training=training)
        if not self._net.include_projection:
            outputs = {k: v for k, v in outputs.items()
                       if not k.startswith("proj_head_")}
        return {k: tf.cast(v, tf.float32) for k, v in outputs.items()}

    def variable_paths(self):
        """Keras paths of (`variables`, `trainable_variables`), in order."""
        return tuple(list(paths) for paths in self._net.paths)

    @tf.function
    def __call__(self, images, trainable=False, training=None):
        """Hub API: `module(images, trainable)`; see `outputs`."""
        mode = bool(trainable) if training is None else bool(training)
        return (self._net.train if mode else self._net.infer)(images)

    def trace(self):
        """Traces __call__ for every keyword combination; returns self."""
        spec = tf.TensorSpec([None, None, None, 3], tf.float32, name=IMAGES_INPUT)
        for trainable, training in CALL_MODES:
            self.__call__.get_concrete_function(
                spec, trainable=trainable, training=training)
        for loss in self.regularization_losses:
            loss.get_concrete_function()
        return self


def serving_signatures(module, image_size, outputs=VECTOR_OUTPUTS,
                       include_bytes=True):
    """The inference signatures (moving BN statistics) of a module.

    Args:
      module: a `SimCLRHubModule`.
      image_size: the trained side; the float signature takes
        [None, image_size, image_size, 3] and bytes are resized to it.
      outputs: names to return (those the module has); None: every output.
      include_bytes: also add the encoded-bytes signature.

    Returns:
      Dict signature name -> concrete function returning a dict of float32.
    """
    def select(result):
        if outputs is None:
            return result
        return {k: v for k, v in result.items() if k in outputs}

    @tf.function(input_signature=[tf.TensorSpec(
        [None, image_size, image_size, 3], tf.float32, name=IMAGES_INPUT)])
    def serve_images(images):
        return select(module(images, trainable=False))

    @tf.function(input_signature=[tf.TensorSpec(
        [None], tf.string, name=BYTES_INPUT)])
    def serve_bytes(image_bytes):
        images = decode_and_preprocess(image_bytes, image_size)
        return select(module(images, trainable=False))

    signatures = {SERVING_DEFAULT: serve_images.get_concrete_function()}
    if include_bytes:
        signatures[SERVING_BYTES] = serve_bytes.get_concrete_function()
    return signatures
