"""Models written by the original SimCLR TF2 code (google-research/simclr tf2/).

Reads its checkpoints and SavedModels by the structure of their object graph
(``model/resnet_model``, ``model/_projection_head``, ``model/supervised_head``),
infers the architecture they hold, and loads them into this project's encoder
and heads, exactly or not at all.
"""
