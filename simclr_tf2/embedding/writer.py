"""Embeddings of many images from an export, streamed to embeddings.npy + index.csv.

An embedding directory holds:
  embeddings.npy  float32 [N, D], one row per readable image (h or z).
  index.csv       row,file,label (folders) or row,id,label (datasets).
  skipped.txt     files that could not be read or decoded, one per line.
  embed_info.json the export, output key and image side used.

Writing streams batches through tf.data into a memory-mapped .npy file, so
memory is bounded by a batch (plus the list of file names) whatever the
number of images. Searching it is `search`.
"""

import csv
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf
from numpy.lib import format as npy_format

from simclr_tf2 import rundir
from simclr_tf2.analysis.features import export_image_size
from simclr_tf2.data import augment
from simclr_tf2.data.folder import IMAGE_EXTENSIONS, decode_or_skip
from simclr_tf2.errors import ConfigError

EMBEDDINGS = "embeddings.npy"
INDEX = "index.csv"
SKIPPED = "skipped.txt"
INFO = "embed_info.json"
# --output name -> the export's output key.
OUTPUT_KEYS = {"h": "final_avg_pool", "z": "proj_head_output"}


def find_export(path):
    """An export directory: `path` itself or a model_dir's newest saved_model/<step>/.

    Raises:
      ConfigError: neither, with the command that writes an export.
    """
    export = rundir.resolve_export(path)
    if export is None:
        raise ConfigError(
            f"--model={path} is neither an export nor a model_dir with an "
            f"export under {rundir.SAVED_MODEL_DIR}/<step>/; run `python -m "
            f"export --model_dir={path}` first.")
    return export


def list_images(folder):
    """Image files under `folder`, recursively, in sorted order.

    Returns:
      (paths, labels): absolute paths, and each file's top-level sub-folder
      name under `folder` ("" for files directly in it).

    Raises:
      ConfigError: no such folder, or no image file in it.
    """
    root = os.path.abspath(os.path.expanduser(folder))
    if not os.path.isdir(root):
        raise ConfigError(f"--images={folder} is not a directory.")
    paths, labels = [], []
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        rel = os.path.relpath(directory, root)
        label = "" if rel == "." else rel.split(os.sep)[0]
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(os.path.join(directory, name))
                labels.append(label)
    if not paths:
        raise ConfigError(
            f"no image files ({' '.join(IMAGE_EXTENSIONS)}) under {root}.")
    return paths, labels


def folder_batches(paths, image_size, batch_size):
    """Batches of a file list; unreadable files come back with ok=False.

    Returns:
      tf.data.Dataset of {"image": float32 [b, S, S, 3], "row": int64 [b]
      (position in `paths`), "ok": bool [b]}.
    """
    refs = tf.data.Dataset.from_tensor_slices(
        {"path": tf.constant(paths, tf.string),
         "row": tf.range(len(paths), dtype=tf.int64)})
    # In order; each file gives exactly one element (see decode_or_skip).
    dataset = refs.interleave(decode_or_skip, cycle_length=tf.data.AUTOTUNE,
                              num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True)

    def preprocess(ex):
        image = tf.cond(
            ex["ok"], lambda: augment.preprocess_for_eval(ex["image"], image_size),
            lambda: tf.zeros([image_size, image_size, 3]))
        return {"image": image, "row": ex["row"], "ok": ex["ok"]}

    return (dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def source_batches(source, split, image_size, batch_size):
    """Batches of a dataset split with evaluation preprocessing.

    Returns:
      tf.data.Dataset of {"image": float32 [b, S, S, 3], "id": int64 [b],
      "label": int64 [b]}.
    """
    def preprocess(ex):
        return {"image": augment.preprocess_for_eval(ex["image"], image_size),
                "id": ex["id"], "label": ex["label"]}

    return (source.split(split).map(preprocess,
                                    num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


class Progress:
    """One status line on stderr: rewritten in place on a terminal, else every ~10%."""

    def __init__(self, total, stream=None):
        # sys.stderr when the object is made, not when the module was
        # imported (a test harness may have swapped it since).
        stream = sys.stderr if stream is None else stream
        self.total, self.stream = total, stream
        self.start, self.shown, self.last = time.time(), -1, None
        self.tty = getattr(stream, "isatty", lambda: False)()

    def update(self, done, final=False):
        tenth = done * 10 // max(self.total, 1)
        if final and not self.tty and done == self.last:
            return  # The last line already says it.
        if not (self.tty or final or tenth > self.shown):
            return
        self.shown, self.last = tenth, done
        rate = done / max(time.time() - self.start, 1e-9)
        line = f"embedded {done}/{self.total} images ({rate:.0f} img/s)"
        end = "\n" if final or not self.tty else ""
        print(("\r" if self.tty else "") + line, end=end, file=self.stream,
              flush=True)


class EmbeddingWriter:
    """Streams rows to embeddings.npy (memory-mapped) and index.csv.

    Args:
      out_dir: destination directory (created).
      capacity: most rows that will be written (the .npy is sized for it
        when the first batch arrives and cut to the rows written at close).
      key_name: the index's second column, "file" or "id".
    """

    def __init__(self, out_dir, capacity, key_name):
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir, self.capacity, self.rows = out_dir, capacity, 0
        self.array = None
        self._index_file = open(os.path.join(out_dir, INDEX), "w", newline="")
        self._index = csv.writer(self._index_file)
        self._index.writerow(["row", key_name, "label"])

    def add(self, vectors, keys, labels):
        """Appends float [b, D] rows with their index entries."""
        if self.array is None:
            self.array = npy_format.open_memmap(
                os.path.join(self.out_dir, EMBEDDINGS), mode="w+",
                dtype=np.float32, shape=(self.capacity, vectors.shape[1]))
        self.array[self.rows:self.rows + len(vectors)] = vectors
        for key, label in zip(keys, labels):
            self._index.writerow([self.rows, key, label])
            self.rows += 1

    def close(self):
        """Flushes; returns (rows, dim)."""
        self._index_file.close()
        if self.array is None:
            raise ConfigError("no image could be read; nothing was embedded.")
        dim = self.array.shape[1]
        self.array.flush()
        del self.array
        if self.rows < self.capacity:
            truncate_npy(os.path.join(self.out_dir, EMBEDDINGS), self.rows, dim)
        return self.rows, dim


def truncate_npy(path, rows, dim):
    """Cuts a C-order float32 [capacity, dim] .npy file to its first rows.

    The header keeps its length (padded with spaces, which numpy allows),
    so the data stays in place and only the file's tail is dropped.
    """
    with open(path, "r+b") as f:
        version = npy_format.read_magic(f)
        if version != (1, 0):
            raise ValueError(f"{path}: unexpected .npy version {version}")
        npy_format.read_array_header_1_0(f)
        offset = f.tell()
        header = repr({"descr": "<f4", "fortran_order": False,
                       "shape": (rows, dim)})
        size = offset - 10  # magic (6) + version (2) + header length (2)
        f.seek(10)
        f.write(header.ljust(size - 1).encode("latin1") + b"\n")
        f.truncate(offset + rows * dim * 4)


def load_export(model):
    """(path, callable, image side or None) for --model.

    `model` is an export, a model_dir holding one, or a `.keras` file of a
    SimCLRModel (whose side is the one it was built at). The callable maps
    (images, trainable=False) to the dict of named outputs.
    """
    if model.endswith(".keras") and os.path.isfile(model):
        import keras
        # Registers SimCLRModel, ResNet, BackboneEncoder... for loading.
        from simclr_tf2.models import build  # noqa: F401
        net = keras.saving.load_model(model)
        shape = (net.get_build_config() or {}).get("input_shape") or [None] * 4
        return model, lambda x, trainable: net(x, training=trainable), shape[1]
    path = find_export(model)
    return path, tf.saved_model.load(path), export_image_size(path)


def forward_fn(module, output):
    """A tf.function images [b, S, S, 3] -> float32 [b, D] of `output`."""
    key = OUTPUT_KEYS[output]

    @tf.function
    def forward(images):
        outputs = module(images, trainable=False)
        if key not in outputs:
            raise ConfigError(
                f"the export has no {key!r} output (--output={output}); it "
                f"has {sorted(outputs)}.")
        return tf.cast(outputs[key], tf.float32)

    return forward


def embed_folder(forward, paths, labels, image_size, out_dir, batch_size=256,
                 progress=None):
    """Embeds image files; returns (rows, dim, skipped paths)."""
    writer = EmbeddingWriter(out_dir, len(paths), "file")
    skipped, done = [], 0
    for batch in folder_batches(paths, image_size, batch_size):
        ok = batch["ok"].numpy()
        rows = batch["row"].numpy()
        skipped += [paths[r] for r in rows[~ok]]
        if ok.any():
            vectors = forward(batch["image"]).numpy()[ok]
            writer.add(vectors, [paths[r] for r in rows[ok]],
                       [labels[r] for r in rows[ok]])
        done += len(rows)
        if progress:
            progress.update(done)
    rows, dim = writer.close()
    with open(os.path.join(out_dir, SKIPPED), "w") as f:
        f.writelines(p + "\n" for p in skipped)
    return rows, dim, skipped


def embed_source(forward, source, split, image_size, out_dir, batch_size=256,
                 progress=None):
    """Embeds a dataset split; returns (rows, dim, skipped paths)."""
    names = source.info.class_names
    writer = EmbeddingWriter(out_dir, source.num_examples(split), "id")
    for batch in source_batches(source, split, image_size, batch_size):
        labels = batch["label"].numpy()
        writer.add(forward(batch["image"]).numpy(), batch["id"].numpy(),
                   [names[l] if 0 <= l < len(names) else (l if l >= 0 else "")
                    for l in labels])
        if progress:
            progress.update(writer.rows)
    rows, dim = writer.close()
    skipped = list(getattr(source, "skipped_files", []))
    with open(os.path.join(out_dir, SKIPPED), "w") as f:
        f.writelines(p + "\n" for p in skipped)
    return rows, dim, skipped


def write_info(out_dir, **info):
    with open(os.path.join(out_dir, INFO), "w") as f:
        json.dump(info, f, indent=1)
