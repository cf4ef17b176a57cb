"""`simclr-embed` (or `python -m simclr_tf2.embedding`): embed images with an export, search them.

Embed a folder (recursively; a file's label is its top-level sub-folder):
  python -m simclr_tf2.embedding --model=MODEL_DIR_OR_EXPORT --images=FOLDER --out=DIR
or a dataset split (names as run.py's --dataset):
  python -m simclr_tf2.embedding --model=... --dataset=fashion_mnist --split=test --out=DIR
Nearest images of a query by cosine similarity:
  python -m simclr_tf2.embedding --index=DIR --query=IMAGE --k=10
Precision@k of same-label neighbours of an index:
  python -m simclr_tf2.embedding --index=DIR --eval_precision_at=10

DIR receives embeddings.npy (float32 [N, D]; h by default, z with
--output=z), index.csv (row, file or id, label), skipped.txt (unreadable
files) and embed_info.json. See `writer` (writing) and `search` (search).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from simclr_tf2 import entrypoints  # noqa: E402

PROG = "python -m simclr_tf2.embedding"


def parser():
    p = argparse.ArgumentParser(
        prog=PROG, description="Embeds images with a trained SimCLR model "
        "and searches them by cosine similarity.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[2:]))
    p.add_argument("--model", help="An export (a directory with saved_model.pb), "
                   "a model_dir (its newest saved_model/<step>/ is used) or a "
                   ".keras file of a SimCLRModel.")
    p.add_argument("--images", help="Folder of .jpg/.jpeg/.png/.bmp/.gif "
                   "files, searched recursively.")
    p.add_argument("--dataset", help="A dataset name as for run.py --dataset "
                   "(digits, fashion_mnist, folder:/path, a prepared TFDS name).")
    p.add_argument("--split", default="test", help="Split of --dataset "
                   "(slices such as 'train[:10%%]' work).")
    p.add_argument("--data_dir", default=None, help="As run.py --data_dir.")
    p.add_argument("--out", help="Directory for the embeddings and index.")
    p.add_argument("--output", choices=["h", "z"], default="h",
                   help="h: the representation (final_avg_pool); z: the "
                   "projection head's output (proj_head_output).")
    p.add_argument("--batch_size", type=int, default=256,
                   help="Images per forward pass.")
    p.add_argument("--image_size", type=int, default=0,
                   help="Input side; 0: the side the export was trained at.")
    p.add_argument("--index", help="An --out directory to search or score "
                   "(default: --out).")
    p.add_argument("--query", help="Image file whose nearest indexed images to "
                   "print (embedded with --model, else the index's model).")
    p.add_argument("--k", type=int, default=10, help="Neighbours to print.")
    p.add_argument("--eval_precision_at", type=int, default=0, metavar="K",
                   help="Print the mean fraction of each labelled row's K "
                   "nearest other rows with the same label.")
    return p


def main(argv=None):
    """Console entry point (`simclr-embed`)."""
    args = parser().parse_args(argv)
    entrypoints.quiet_tensorflow_import()
    entrypoints.report_user_errors(lambda: run(args))


def run(args):
    from simclr_tf2.embedding import writer
    from simclr_tf2.errors import ConfigError
    writes = bool(args.images or args.dataset)
    if not (writes or args.query or args.eval_precision_at):
        raise ConfigError("nothing to do: give --model with --images or "
                          "--dataset and --out, or --index with --query or "
                          f"--eval_precision_at (see {PROG} --help).")
    if writes:
        if args.images and args.dataset:
            raise ConfigError("give --images or --dataset, not both.")
        if not (args.model and args.out):
            raise ConfigError("embedding needs --model=EXPORT_OR_MODEL_DIR and "
                              "--out=DIR.")
        write(args, writer)
    index_dir = args.index or (args.out if writes else None)
    if (args.query or args.eval_precision_at) and not index_dir:
        raise ConfigError("--query and --eval_precision_at need --index=DIR "
                          "(a directory written with --out).")
    if args.eval_precision_at:
        from simclr_tf2.embedding import search
        vectors, index, _ = search.read_index(index_dir)
        value, scored = search.precision_at_k(
            vectors, [row["label"] for row in index], args.eval_precision_at)
        print(f"precision@{args.eval_precision_at} of same-label neighbours: "
              f"{value:.4f} ({scored} labelled rows of {len(index)})")
    if args.query:
        query(args, writer, index_dir)


def write(args, writer):
    from simclr_tf2.errors import ConfigError
    path, module, image_size = writer.load_export(args.model)
    image_size = args.image_size or image_size
    if not image_size:
        raise ConfigError(f"--model={args.model} does not record its input "
                          "side; give --image_size.")
    forward = writer.forward_fn(module, args.output)
    if args.images:
        paths, labels = writer.list_images(args.images)
        progress = writer.Progress(len(paths))
        rows, dim, skipped = writer.embed_folder(
            forward, paths, labels, image_size, args.out, args.batch_size,
            progress)
        source_name = os.path.abspath(args.images)
    else:
        from simclr_tf2.data.registry import open_source
        source = open_source(args.dataset, args.data_dir)
        progress = writer.Progress(source.num_examples(args.split))
        rows, dim, skipped = writer.embed_source(
            forward, source, args.split, image_size, args.out, args.batch_size,
            progress)
        source_name = f"{args.dataset}:{args.split}"
    progress.update(rows + len(skipped), final=True)
    writer.write_info(args.out, model=os.path.abspath(path),
                         output=args.output, image_size=image_size,
                         source=source_name, rows=rows, dim=dim)
    print(f"wrote {rows} embeddings of dimension {dim} ({args.output}) to "
          f"{os.path.join(args.out, writer.EMBEDDINGS)} with "
          f"{writer.INDEX}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s), listed in "
              f"{os.path.join(args.out, writer.SKIPPED)}:")
        for name in skipped:
            print(f"  {name}")


def query(args, writer, index_dir):
    from simclr_tf2.embedding import search
    from simclr_tf2.errors import ConfigError
    vectors, index, info = search.read_index(index_dir)
    model = args.model or info.get("model")
    if not model:
        raise ConfigError("--query needs --model (the index records none).")
    _, module, image_size = writer.load_export(model)
    image_size = args.image_size or info.get("image_size") or image_size
    forward = writer.forward_fn(module, info.get("output", args.output))
    batch = next(iter(writer.folder_batches([args.query], image_size, 1)))
    if not batch["ok"].numpy()[0]:
        raise ConfigError(f"--query={args.query} cannot be read as an image.")
    rows, sims = search.nearest(vectors, forward(batch["image"]).numpy(),
                                   args.k)
    key = "file" if "file" in index[0] else "id"
    print(f"{len(rows[0])} nearest of {len(index)} to {args.query}:")
    print("rank  similarity  label  " + key)
    for rank, (row, sim) in enumerate(zip(rows[0], sims[0]), 1):
        entry = index[row]
        print(f"{rank:4d}  {sim:10.4f}  {entry['label'] or '-'}  {entry[key]}")


if __name__ == "__main__":
    main()
