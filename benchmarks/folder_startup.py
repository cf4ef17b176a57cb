"""Start-up cost of an image-folder dataset: opening it, and the first training batch.

Writes a class-sorted folder of small JPEGs (once; reused when it exists),
then times `FolderSource(path)` and the first batch of
`pipeline.build_train_dataset` in pretraining mode, each in this process.
Run it against two checkouts to compare them:

    python benchmarks/folder_startup.py --root=/tmp/startup_20k --num_images=20000
    python benchmarks/folder_startup.py --root=/tmp/startup_20k --corrupt=20

Prints one JSON line: {"num_files", "open_s", "first_batch_s", ...}.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from simclr_tf2.data import pipeline  # noqa: E402
from simclr_tf2.data.folder import FolderSource  # noqa: E402


def write_folder(root, num_images, num_classes, size, corrupt):
    """Writes num_images JPEGs into root/class_XXX/ (sorted by class)."""
    marker = os.path.join(root, ".complete")
    if os.path.exists(marker):
        return
    rng = np.random.default_rng(0)
    per_class = num_images // num_classes
    for c in range(num_classes):
        directory = os.path.join(root, f"class_{c:03d}")
        os.makedirs(directory, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size + (3,), dtype=np.uint8)
            Image.fromarray(pixels).save(
                os.path.join(directory, f"{i:06d}.jpg"), quality=90)
    for i in range(corrupt):
        path = os.path.join(root, f"class_{i % num_classes:03d}", f"bad{i}.jpg")
        with open(path, "wb") as f:
            f.write(b"\xff\xd8 truncated")
    open(marker, "w").close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/simclr_startup_folder")
    parser.add_argument("--num_images", type=int, default=20_000)
    parser.add_argument("--num_classes", type=int, default=100)
    parser.add_argument("--size", type=int, nargs=2, default=(32, 32))
    parser.add_argument("--corrupt", type=int, default=0)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    start = time.perf_counter()
    write_folder(args.root, args.num_images, args.num_classes,
                 tuple(args.size), args.corrupt)
    write_s = time.perf_counter() - start

    start = time.perf_counter()
    source = FolderSource(args.root)
    open_s = time.perf_counter() - start
    start = time.perf_counter()
    dataset = pipeline.build_train_dataset(source, "train", args.batch,
                                           pipeline.two_view_transform(32))
    batch = next(iter(dataset))
    first_batch_s = time.perf_counter() - start
    labels = batch["label"].numpy()
    print(json.dumps({
        "num_files": source.num_examples("train"), "write_s": round(write_s, 2),
        "open_s": round(open_s, 2), "first_batch_s": round(first_batch_s, 2),
        "classes_in_first_batch": int(len(np.unique(labels))),
        "skipped_so_far": len(source.skipped_files)}))


if __name__ == "__main__":
    main()
