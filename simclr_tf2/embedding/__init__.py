"""Embeddings of images from a trained model, and nearest-neighbour search over them.

Modules: `command` (the `simclr-embed` / `python -m simclr_tf2.embedding`
command line), `writer` (streaming embeddings.npy + index.csv) and
`search` (cosine nearest neighbours, precision@k). Nothing is imported on
import, so the command line can quiet TensorFlow before it starts.
"""
