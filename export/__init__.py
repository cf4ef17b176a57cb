"""`python -m export`: the checkout's command line over `simclr_tf2.export`.

The exporter itself is the library's `simclr_tf2.export` package (installed
with the library, with the `simclr-export` console script).
"""
