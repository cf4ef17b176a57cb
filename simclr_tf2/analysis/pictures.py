"""PNG pictures of a SimCLR run, drawn with matplotlib (Agg, no display).

* augmented_pairs: originals with two augmented views each, as the
  pretraining pipeline makes them, to check the recipe by eye;
* training_curves: contrastive loss, contrastive accuracy and accuracy
  (online linear head, periodic kNN, final eval) against the global step,
  read from the run's TensorBoard event files;
* embedding_maps: t-SNE of test representations coloured by class, one
  panel per encoder (e.g. pretrained next to untrained).
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402

from simclr_tf2 import rundir  # noqa: E402
from simclr_tf2.data import augment  # noqa: E402
from simclr_tf2.errors import ConfigError  # noqa: E402


def _save(figure, path):
    """Writes the figure to `path` atomically (temp file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    figure.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(figure)
    os.replace(tmp, path)
    return path


def augmented_pairs(source, split, image_size, path, num_images=8,
                    color_jitter_strength=0.5, use_blur=False, seed=0,
                    crop_min_area=0.08, random_flip=True):
    """Draws originals (top row) over two pretraining views each.

    Args:
      source: an opened Source; the first `num_images` of `split` are used.
      image_size: side S of the views.
      path: PNG file to write.
      color_jitter_strength, use_blur, crop_min_area, random_flip: the
        run's augmentation settings.
      seed: int; view i of image j uses the stateless seed (seed, j).

    Returns:
      path.
    """
    examples = list(source.split(split).take(num_images))
    figure, axes = plt.subplots(3, num_images, figsize=(1.3 * num_images, 4.2),
                                squeeze=False)
    for column, example in enumerate(examples):
        original = augment.preprocess_for_eval(example["image"], image_size)
        views = augment.two_views(example["image"], image_size,
                                  tf.constant([seed, column], tf.int64),
                                  color_jitter_strength, use_blur, crop_min_area,
                                  random_flip)
        panels = [original, views[..., :3], views[..., 3:]]
        for row, panel in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(np.clip(panel.numpy(), 0.0, 1.0), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
        name = _class_name(source.info.class_names, int(example["label"]))
        axes[0, column].set_title(name, fontsize=8)
    for row, label in enumerate(["original", "view 1", "view 2"]):
        axes[row, 0].set_ylabel(label)
    figure.suptitle(f"SimCLR augmented view pairs (crops of {crop_min_area:.0%}-100%, "
                    f"jitter {color_jitter_strength}, blur {'on' if use_blur else 'off'})")
    return _save(figure, path)


def read_scalars(log_dir):
    """Scalar summaries of one TensorBoard log directory.

    Returns:
      dict tag -> (steps int array [T], values float array [T]), sorted by step.
    """
    if not os.path.isdir(log_dir):
        return {}
    events = event_accumulator.EventAccumulator(
        log_dir, size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    scalars = {}
    for tag in events.Tags()[event_accumulator.TENSORS]:
        if events.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            continue
        points = sorted((event.step, float(tf.make_ndarray(event.tensor_proto)))
                        for event in events.Tensors(tag))
        scalars[tag] = (np.array([p[0] for p in points]),
                        np.array([p[1] for p in points]))
    return scalars


def training_curves(model_dir, path):
    """Plots loss, contrastive accuracy and accuracies of a pretraining run.

    Args:
      model_dir: the run's --model_dir (reads train/ and eval/ summaries).
      path: PNG file to write.

    Returns:
      path.
    """
    train = read_scalars(os.path.join(model_dir, rundir.TRAIN_SUMMARIES))
    evaluation = read_scalars(os.path.join(model_dir, rundir.EVAL_SUMMARIES))
    if "train/contrast_loss" not in train:
        raise ConfigError(f"{model_dir}/train has no train/contrast_loss summaries; "
                         "pass the model_dir of a pretraining run.")
    figure, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    steps, loss = train["train/contrast_loss"]
    axes[0].plot(steps, loss)
    axes[0].set_title("NT-Xent loss")
    steps, accuracy = train["train/contrast_acc"]
    axes[1].plot(steps, accuracy)
    axes[1].set_title("contrastive accuracy (positive ranked first)")
    curves = [("train/supervised_acc", train, "online linear head (train batches)"),
              ("train/knn_top_1_accuracy", train, "kNN-200 top-1 (test)")]
    for tag, scalars, label in curves:
        if tag in scalars:
            axes[2].plot(*scalars[tag], marker="o" if "knn" in tag else None,
                         label=label)
    for tag, label in [("eval/label_top_1_accuracy", "final linear head (test)"),
                       ("eval/knn_top_1_accuracy", "final kNN-200 (test)")]:
        if tag in evaluation:
            axes[2].scatter(*evaluation[tag], marker="*", s=120, label=label,
                            zorder=3)
    axes[2].set_title("accuracy")
    axes[2].set_ylim(0.0, 1.0)
    axes[2].legend(fontsize=8, loc="lower right")
    for axis in axes:
        axis.set_xlabel("global step")
        axis.grid(alpha=0.3)
    return _save(figure, path)


def tsne_2d(features, seed=0):
    """t-SNE of [N, D] features (l2-normalised, as the kNN uses them) -> [N, 2]."""
    features = features / np.maximum(
        np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    perplexity = min(30.0, (len(features) - 1) / 3.0)
    return TSNE(n_components=2, perplexity=perplexity, init="pca",
                random_state=seed).fit_transform(features)


def embedding_maps(panels, labels, class_names, path, seed=0):
    """Side-by-side t-SNE maps of several encoders' features of the same images.

    Args:
      panels: list of (title, features float [N, D]).
      labels: int [N] classes of the N images (colours).
      class_names: class index -> name (legend); may be empty.
      path: PNG file to write.

    Returns:
      path.
    """
    figure, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 6),
                                squeeze=False)
    colours = plt.get_cmap("tab10")
    classes = np.unique(labels)
    for axis, (title, features) in zip(axes[0], panels):
        points = tsne_2d(features, seed)
        for index, label in enumerate(classes):
            chosen = labels == label
            name = _class_name(class_names, label)
            axis.scatter(points[chosen, 0], points[chosen, 1], s=4,
                         color=colours(index % 10), label=name)
        axis.set_title(title)
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0][-1].legend(markerscale=4, fontsize=8, loc="center left",
                       bbox_to_anchor=(1.0, 0.5))
    return _save(figure, path)


def _class_name(class_names, label):
    return class_names[label] if len(class_names) > label else str(label)
