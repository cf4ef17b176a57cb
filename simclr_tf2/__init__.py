"""simclr_tf2: SimCLR v1/v2 self-supervised learning on TensorFlow 2 and Keras 3."""
