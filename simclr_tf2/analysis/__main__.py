"""Command line: `python -m simclr_tf2.analysis {probes,pictures} --help`.

probes    L-BFGS logistic regression (all labels and a label subset) and
          cosine kNN-10 / kNN-200 on frozen features of exported encoders
          and on raw pixels, plus euclidean kNN-200 on raw pixels; writes a
          JSON file.
pictures  augmented_views.png, training_curves.png and tsne.png.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from simclr_tf2 import entrypoints  # noqa: E402
from simclr_tf2 import config as config_lib  # noqa: E402

entrypoints.quiet_tensorflow_import()  # Before the modules below import TF.

from simclr_tf2.analysis import features, pictures, probes  # noqa: E402
from simclr_tf2.data import subsets  # noqa: E402
from simclr_tf2.data.registry import open_source  # noqa: E402
from simclr_tf2.errors import ConfigError  # noqa: E402


def _parser():
    parser = argparse.ArgumentParser(prog="python -m simclr_tf2.analysis",
                                     description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("probes", "pictures"):
        sub = commands.add_parser(name)
        sub.add_argument("--dataset", default="fashion_mnist")
        sub.add_argument("--data_dir", default=None)
        sub.add_argument("--train_split", default="train")
        sub.add_argument("--eval_split", default="test")
        sub.add_argument("--pretrained", required=True,
                         help="SavedModel export of the pretrained encoder "
                              "(model_dir/saved_model/<step>).")
        sub.add_argument("--untrained", required=(name == "pictures"),
                         help="SavedModel export of a random-init encoder.")
        sub.add_argument("--out", required=True)
    probe_parser = commands.choices["probes"]
    probe_parser.add_argument("--label_subset_file", default=None,
                              help="label_subset.txt of a 1%% run: also probe "
                                   "with only those labels.")
    probe_parser.add_argument("--extra", action="append", default=[],
                              metavar="NAME=EXPORT",
                              help="Also probe this SavedModel export, in rows "
                                   "logreg_NAME_*; repeatable (e.g. "
                                   "supcon=.../saved_model/<step>).")
    picture_parser = commands.choices["pictures"]
    picture_parser.add_argument("--pretrain_dir", required=True,
                                help="model_dir of the pretraining run (curves, "
                                     "augmentation settings).")
    picture_parser.add_argument("--tsne_points", type=int, default=2000)
    return parser


def _row(run, what, top1, seconds, knn_top1=None):
    return {"run": run, "what": what, "top1": top1, "knn_top1": knn_top1,
            "seconds": seconds}


def _extra_exports(values):
    """[(name, export)] from --extra NAME=EXPORT values."""
    pairs = []
    for value in values:
        name, sep, export = value.partition("=")
        if not (sep and name and export):
            raise ConfigError(f"--extra={value!r} must look like NAME=EXPORT, "
                              "e.g. --extra=supcon=/runs/supcon/saved_model/3000.")
        pairs.append((name, export))
    return pairs


def run_probes(args):
    encoders = ([("pretrained", args.pretrained)]
                + ([("untrained", args.untrained)] if args.untrained else [])
                + _extra_exports(args.extra))
    source = open_source(args.dataset, args.data_dir)
    train_x, train_y, train_ids = features.split_pixels(source, args.train_split)
    test_x, test_y, _ = features.split_pixels(source, args.eval_split)
    subset = None
    if args.label_subset_file:
        subset = probes.subset_rows(
            train_ids, subsets.read_subset_file(args.label_subset_file))
    inputs = [("pixels", "raw pixels", train_x, test_x)]
    for name, export in encoders:
        train_f, train_fy = features.split_features(export, source, args.train_split)
        test_f, test_fy = features.split_features(export, source, args.eval_split)
        if not (train_fy == train_y).all() or not (test_fy == test_y).all():
            raise ValueError(f"feature rows of {export} are not in split order")
        what = {"pretrained": "frozen SimCLR features",
                "untrained": "frozen random-init features"}.get(
                    name, f"frozen {name} features")
        inputs.append((name, what, train_f, test_f))

    rows = []
    for name, what, train_in, test_in in inputs:
        cached = _pixel_cache(args) if name == "pixels" else None
        if cached and os.path.exists(cached):
            reused = json.load(open(cached))["rows"]  # Subset-free pixel rows.
            print(f"raw-pixel rows reused from {cached}", flush=True)
        else:
            reused = _probe_rows(name, what, train_in, train_y, test_in, test_y)
            if name == "pixels":
                knn, seconds = probes.timed(probes.knn_top1, train_x, train_y,
                                            test_x, test_y)
                reused.append(_row("knn_pixels", "scikit-learn kNN-200 (euclidean), "
                                   "raw pixels", None, seconds, knn_top1=knn))
            if cached:
                _write_json(cached, {"rows": reused})
        rows.extend(reused)
        if subset is not None:
            top1, seconds = probes.timed(probes.logistic_regression_top1,
                                         train_in[subset], train_y[subset], test_in, test_y)
            rows.append(_row(f"logreg_{name}_1pct",
                             f"L-BFGS logistic regression, {what}, "
                             f"{int(subset.sum())} labels", top1, seconds))
            print(rows[-1], flush=True)
    _write_json(args.out, {"rows": rows})


def _probe_rows(name, what, train_in, train_y, test_in, test_y):
    """L-BFGS on all labels and cosine kNN-10 / kNN-200 of one input's rows."""
    top1, seconds = probes.timed(probes.logistic_regression_top1,
                                 train_in, train_y, test_in, test_y)
    rows = [_row(f"logreg_{name}_100pct",
                 f"L-BFGS logistic regression, {what}, all labels", top1, seconds)]
    print(rows[-1], flush=True)
    for k in probes.COSINE_KNN_KS:
        knn, seconds = probes.timed(probes.cosine_knn_top1, train_in, train_y,
                                    test_in, test_y, k=k)
        rows.append(_row(f"knn{k}_{name}", f"cosine kNN-{k}, {what}, all labels",
                         None, seconds, knn_top1=knn))
        print(rows[-1], flush=True)
    return rows


def _pixel_cache(args):
    """Beside --out: the raw-pixel rows that depend only on the splits (the
    L-BFGS fit on all 60k Fashion-MNIST pixels takes minutes), reused by
    later probes writing to the same folder."""
    name = "_".join(["pixel_probes", args.dataset, args.train_split, args.eval_split])
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)
    return os.path.join(os.path.dirname(os.path.abspath(args.out)), safe + ".json")


def _write_json(path, value):
    """Writes JSON atomically (a temporary file, then a rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
    os.replace(tmp, path)


def run_pictures(args):
    source = open_source(args.dataset, args.data_dir)
    data = config_lib.read_flags_json(args.pretrain_dir)[0].data
    os.makedirs(args.out, exist_ok=True)
    written = [pictures.augmented_pairs(
        source, args.train_split, data.image_size,
        os.path.join(args.out, "augmented_views.png"),
        color_jitter_strength=data.color_jitter_strength,
        use_blur=data.use_blur, crop_min_area=data.crop_min_area,
        random_flip=data.random_flip)]
    written.append(pictures.training_curves(
        args.pretrain_dir, os.path.join(args.out, "training_curves.png")))
    panels = []
    for title, export in [("SimCLR-pretrained encoder", args.pretrained),
                          ("untrained (random-init) encoder", args.untrained)]:
        feats, labels = features.split_features(export, source, args.eval_split,
                                                limit=args.tsne_points)
        panels.append((title, feats))
    written.append(pictures.embedding_maps(
        panels, labels, source.info.class_names, os.path.join(args.out, "tsne.png")))
    for path in written:
        print(f"wrote {path}")


def main(argv=None):
    args = _parser().parse_args(argv)
    command = {"probes": run_probes, "pictures": run_pictures}[args.command]
    entrypoints.report_user_errors(lambda: command(args))


if __name__ == "__main__":
    main()
