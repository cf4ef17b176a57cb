"""Looking at what SimCLR learned: frozen-feature probes and pictures.

`python -m simclr_tf2.analysis probes ...` measures L-BFGS logistic
regression and kNN on frozen features of exported encoders and on raw pixels;
`python -m simclr_tf2.analysis pictures ...` draws augmented view pairs,
training curves and t-SNE maps as PNG files.
"""
