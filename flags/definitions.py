"""Every absl flag of run.py: the original SimCLR TF2 flags plus our own."""

from absl import flags

from simclr_tf2.config import RunConfig

# Every default is the RunConfig field's default (one copy of each value);
# --cifar_stem alone differs: "auto", resolved against --image_size.
DEFAULTS = RunConfig().to_flat()

# --------------------------------------------------------------------------
# Flags of the original SimCLR TF2 run.py (same names, types and meaning).
# Where our default differs, the help says why.
# --------------------------------------------------------------------------
flags.DEFINE_float(
    "learning_rate", DEFAULTS["learning_rate"],
    "Initial learning rate per 256 examples (linear scaling) or the "
    "coefficient of sqrt(batch size) (sqrt scaling).")
flags.DEFINE_enum(
    "learning_rate_scaling", DEFAULTS["learning_rate_scaling"], ["linear", "sqrt"],
    "How to scale the learning rate with the batch size: lr*B/256 or lr*sqrt(B).")
flags.DEFINE_float("warmup_epochs", DEFAULTS["warmup_epochs"], "Number of epochs of linear warmup.")
flags.DEFINE_float("weight_decay", DEFAULTS["weight_decay"], "Amount of weight decay to use.")
flags.DEFINE_float("batch_norm_decay", DEFAULTS["batch_norm_decay"], "Batch norm moving-average decay.")
flags.DEFINE_integer(
    "train_batch_size", DEFAULTS["train_batch_size"],
    "Global batch size for training (split over replicas). Larger than the "
    "dataset is allowed: examples repeat within a batch (with a warning).")
flags.DEFINE_string(
    "train_split", DEFAULTS["train_split"],
    "Split for training; TFDS slicing such as 'train[:10%]' works for every dataset.")
flags.DEFINE_integer("train_epochs", DEFAULTS["train_epochs"], "Number of epochs to train for.")
flags.DEFINE_integer(
    "train_steps", DEFAULTS["train_steps"], "Number of steps to train for. If provided, overrides train_epochs.")
flags.DEFINE_integer(
    "eval_steps", DEFAULTS["eval_steps"], "Number of steps to eval for. If not provided, evals over the entire split.")
flags.DEFINE_integer("eval_batch_size", DEFAULTS["eval_batch_size"], "Batch size for eval.")
flags.DEFINE_integer("checkpoint_epochs", DEFAULTS["checkpoint_epochs"], "Number of epochs between checkpoints/summaries.")
flags.DEFINE_integer(
    "checkpoint_steps", DEFAULTS["checkpoint_steps"],
    "Number of steps between checkpoints/summaries. If provided, overrides checkpoint_epochs.")
flags.DEFINE_string(
    "eval_split", DEFAULTS["eval_split"],
    "Split for evaluation (datasets without 'validation' fall back to 'test').")
flags.DEFINE_string(
    "dataset", DEFAULTS["dataset"],
    "Dataset: 'digits' (embedded, no download; the default), 'fashion_mnist', "
    "'folder:/path/to/images', or any prepared TFDS name such as 'cifar10' or "
    "'imagenet2012'. The original defaulted to imagenet2012, which needs a "
    "prepared copy; pass --dataset=imagenet2012 --data_dir=... for it.")
flags.DEFINE_bool("cache_dataset", DEFAULTS["cache_dataset"], "Whether to cache the decoded dataset in memory.")
flags.DEFINE_enum(
    "mode", DEFAULTS["mode"], ["train", "eval", "train_then_eval"],
    "Whether to perform training or evaluation (or train, then evaluate).")
flags.DEFINE_enum(
    "train_mode", DEFAULTS["train_mode"], ["pretrain", "finetune", "distill"],
    "pretrain: SimCLR self-supervised pretraining; finetune: supervised "
    "fine-tuning (or linear evaluation with --fine_tune_after_block=4); "
    "distill: SimCLRv2 distillation from --teacher on unlabeled data.")
flags.DEFINE_bool(
    "lineareval_while_pretraining", DEFAULTS["lineareval_while_pretraining"],
    "Train a linear classifier on stop_gradient(h) while pretraining (labels "
    "never reach the encoder); needed for eval accuracy of a pretraining run.")
flags.DEFINE_string(
    "checkpoint", DEFAULTS["checkpoint"],
    "Checkpoint (file prefix or model_dir) to initialise the encoder and "
    "projection head from, typically a pretraining run for fine-tuning.")
flags.DEFINE_bool(
    "zero_init_logits_layer", DEFAULTS["zero_init_logits_layer"], "If True, zero initialize layers after avg_pool for supervised learning.")
flags.DEFINE_integer(
    "fine_tune_after_block", DEFAULTS["fine_tune_after_block"],
    "The layers after which block that we will fine-tune. -1 means fine-tuning "
    "everything. 0 means fine-tuning after stem block. 4 means fine-tuning just "
    "the linear head (linear evaluation, encoder BN statistics frozen).")
flags.DEFINE_string("master", DEFAULTS["master"], "Address/name of the TensorFlow master to use. By default, use TPU in config.")
flags.DEFINE_string(
    "model_dir", DEFAULTS["model_dir"],
    "Model directory for checkpoints, summaries and exports. Default: a fresh "
    "temporary directory, printed at start.")
flags.DEFINE_string("data_dir", DEFAULTS["data_dir"], "Directory where TFDS datasets are prepared (no download happens).")
flags.DEFINE_bool(
    "use_tpu", DEFAULTS["use_tpu"],
    "Whether to run on TPU (TPUStrategy). The original defaulted to True; "
    "here False so the default run works on any machine.")
flags.DEFINE_string("tpu_name", DEFAULTS["tpu_name"], "The Cloud TPU to use for training.")
flags.DEFINE_string("tpu_zone", DEFAULTS["tpu_zone"], "GCE zone where the Cloud TPU is located in.")
flags.DEFINE_string("gcp_project", DEFAULTS["gcp_project"], "Project name for the Cloud TPU-enabled project.")
flags.DEFINE_enum(
    "optimizer", DEFAULTS["optimizer"], ["momentum", "adam", "lars"], "Optimizer to use.")
flags.DEFINE_float("momentum", DEFAULTS["momentum"], "Momentum parameter.")
flags.DEFINE_string("eval_name", DEFAULTS["eval_name"], "Name for eval (used in result file names and summaries).")
flags.DEFINE_integer("keep_checkpoint_max", DEFAULTS["keep_checkpoint_max"], "Maximum number of checkpoints to keep.")
flags.DEFINE_integer("keep_hub_module_max", DEFAULTS["keep_hub_module_max"], "Maximum number of exported SavedModels/Hub modules to keep.")
flags.DEFINE_float("temperature", DEFAULTS["temperature"], "Temperature parameter for contrastive loss.")
flags.DEFINE_boolean("hidden_norm", DEFAULTS["hidden_norm"], "Whether to L2-normalise the projection output before the contrastive loss.")
flags.DEFINE_enum(
    "proj_head_mode", DEFAULTS["proj_head_mode"], ["none", "linear", "nonlinear"], "How the head projection is done.")
flags.DEFINE_integer("proj_out_dim", DEFAULTS["proj_out_dim"], "Number of head projection dimension.")
flags.DEFINE_integer("num_proj_layers", DEFAULTS["num_proj_layers"], "Number of non-linear head layers.")
flags.DEFINE_integer(
    "ft_proj_selector", DEFAULTS["ft_proj_selector"],
    "Which layer of the projection head to use during fine-tuning. 0 means "
    "no projection head, and -1 means the final layer.")
flags.DEFINE_boolean("global_bn", DEFAULTS["global_bn"], "Whether to aggregate BN statistics across distributed cores.")
flags.DEFINE_float(
    "width_multiplier", DEFAULTS["width_multiplier"],
    "Multiplier to change width of network (fractional values such as 0.25 "
    "give CPU-sized models).")
flags.DEFINE_integer("resnet_depth", DEFAULTS["resnet_depth"], "Depth of ResNet: 18, 34, 50, 101, 152 or 200.")
flags.DEFINE_float("sk_ratio", DEFAULTS["sk_ratio"], "If it is bigger than 0, it will enable SK. Recommendation: 0.0625.")
flags.DEFINE_float("se_ratio", DEFAULTS["se_ratio"], "If it is bigger than 0, it will enable SE.")
flags.DEFINE_integer("image_size", DEFAULTS["image_size"], "Input image size.")
flags.DEFINE_float("color_jitter_strength", DEFAULTS["color_jitter_strength"], "The strength of color jittering.")
flags.DEFINE_boolean("use_blur", DEFAULTS["use_blur"], "Whether or not to use Gaussian blur for augmentation during pretraining.")
flags.DEFINE_float(
    "crop_min_area", DEFAULTS["crop_min_area"],
    "Smallest fraction of the image area a random training crop keeps "
    "(pretraining and fine-tuning). The paper's 0.08; small images such as "
    "28 px Fashion-MNIST do better with more.")
flags.DEFINE_boolean(
    "random_flip", DEFAULTS["random_flip"],
    "Flip training images left-right at random (pretraining and "
    "fine-tuning), as the paper does. Off in the digits recipe: a mirrored "
    "digit can look like another digit.")

# --------------------------------------------------------------------------
# Flags new in simclr_tf2.
# --------------------------------------------------------------------------
flags.DEFINE_enum(
    "cifar_stem", "auto", ["auto", "true", "false"],
    "ResNet stem: 'true' = 3x3 stride-1 conv without max-pool (CIFAR), "
    "'false' = 7x7 stride-2 conv + max-pool (ImageNet), 'auto' = CIFAR stem "
    "for image_size <= 64.")
flags.DEFINE_integer("seed", DEFAULTS["seed"], "Seed for data order, augmentation and weight initialisation.")
flags.DEFINE_enum(
    "precision", "auto", ["auto", "float32", "mixed_bfloat16", "mixed_float16"],
    "Compute precision (Keras mixed-precision policy); float16 uses loss "
    "scaling. 'auto': mixed_bfloat16 on TPUs and on CPUs with bfloat16 "
    "instructions (amx_bf16 or avx512_bf16), float32 on GPUs and other CPUs; "
    "the effective configuration prints the choice and its reason.")
flags.DEFINE_bool("jit_compile", DEFAULTS["jit_compile"], "Compile the train step with XLA.")
flags.DEFINE_integer(
    "steps_per_execution", DEFAULTS["steps_per_execution"], "Train steps run per tf.function call (fewer Python round trips).")
flags.DEFINE_integer(
    "num_logical_cpu_devices", DEFAULTS["num_logical_cpu_devices"],
    "Split the CPU into this many logical devices and train with "
    "MirroredStrategy over them (for testing distribution without GPUs).")
flags.DEFINE_integer(
    "log_every_steps", DEFAULTS["log_every_steps"], "Print a progress line and write train summaries every N steps.")
flags.DEFINE_integer(
    "eval_timeout_secs", DEFAULTS["eval_timeout_secs"],
    "--mode=eval: stop waiting for a new checkpoint after this many seconds.")
flags.DEFINE_float(
    "label_fraction", DEFAULTS["label_fraction"],
    "Fraction in (0, 1] of the labelled train split to use, class-balanced, "
    "chosen with --seed; the chosen ids are written to model_dir/label_subset.txt. "
    "finetune trains on them; distill trains on every image and reads only their labels.")
flags.DEFINE_string(
    "label_subset_file", DEFAULTS["label_subset_file"],
    "File of example ids (one per line, e.g. a label_subset.txt): finetune trains "
    "on them; distill reads only their labels.")
flags.DEFINE_string(
    "teacher", DEFAULTS["teacher"],
    "train_mode=distill: teacher SavedModel directory (hub-style callable "
    "returning 'logits_sup') or a fine-tuning model_dir.")
flags.DEFINE_float("distill_temperature", DEFAULTS["distill_temperature"], "Softmax temperature of teacher and student when distilling.")
flags.DEFINE_float(
    "distill_label_weight", DEFAULTS["distill_label_weight"],
    "Weight of the true-label cross entropy added to the distillation loss (0: "
    "unlabeled only), per labelled image against one image's soft-label loss (the "
    "label term is summed over the batch's labelled images and divided by the batch "
    "size); with --label_fraction or --label_subset_file only those labels count.")
flags.DEFINE_enum(
    "distill_teacher_input", DEFAULTS["distill_teacher_input"],
    ["student_view", "whole_image"],
    "What the distillation teacher labels: student_view, the student's augmented "
    "image (SimCLRv2); whole_image, the image as evaluated, while the student sees "
    "its augmented view (--crop_min_area, flips).")
flags.DEFINE_bool("export_after_eval", DEFAULTS["export_after_eval"], "Export a SavedModel to model_dir/saved_model/<step> after evaluation.")
flags.DEFINE_bool("nesterov", DEFAULTS["nesterov"], "Use Nesterov momentum with --optimizer=momentum (the fine-tuning recipe does).")
flags.DEFINE_integer(
    "micro_batch_size", DEFAULTS["micro_batch_size"],
    "Pretraining only: compute the exact gradient of the full batch in chunks "
    "of this many examples per replica (gradient caching), so a large "
    "--train_batch_size fits in memory. 0 = off.")
flags.DEFINE_enum(
    "contrastive_loss", DEFAULTS["contrastive_loss"], ["nt_xent", "supcon"],
    "Pretraining contrastive loss. nt_xent: SimCLR's "
    "NT-Xent (each view's only positive is its other view). supcon: "
    "supervised contrastive loss (Khosla et al. 2020, L_sup_out): every other "
    "view with the same label is a positive too; needs a labelled dataset "
    "(label -1 examples only match their own other view). Uses --temperature "
    "and --hidden_norm.")
flags.DEFINE_bool(
    "knn_eval", DEFAULTS["knn_eval"],
    "Also report weighted kNN top-1 accuracy of h (eval/knn_top_1_accuracy): "
    "train-split features as the bank, eval split as queries. Costs one "
    "forward pass over the train split.")
flags.DEFINE_integer("knn_k", DEFAULTS["knn_k"], "Neighbours of the kNN evaluation.")
flags.DEFINE_float("knn_temperature", DEFAULTS["knn_temperature"], "Vote weight exp(cos/temperature) of the kNN evaluation.")
flags.DEFINE_integer(
    "knn_eval_every_steps", DEFAULTS["knn_eval_every_steps"],
    "During training, print and summarise the kNN accuracy every N steps (0: never).")
flags.DEFINE_integer(
    "knn_max_bank", DEFAULTS["knn_max_bank"],
    "kNN evaluation embeds at most this many train examples as its bank (a "
    "random subset fixed by --seed when the train split is larger; 0: all).")
flags.DEFINE_string(
    "backbone", DEFAULTS["backbone"],
    "Encoder: 'resnet' (the original SimCLR ResNet; --resnet_depth, "
    "--width_multiplier, --sk_ratio, --se_ratio, --cifar_stem shape it) or "
    "'keras_applications:NAME', a Keras Applications CNN built with "
    "weights=None (e.g. ResNet50V2, EfficientNetV2B0, MobileNetV3Small, "
    "ConvNeXtTiny); its only encoder output is final_avg_pool. See docs/library.md.")
flags.DEFINE_integer(
    "memory_size", DEFAULTS["memory_size"],
    "Pretraining only: SimCLRv2's memory. Number of keys (memory-network "
    "projections of past batches, both views) kept as extra negatives; "
    "0 turns the memory off (plain NT-Xent/SupCon). The paper uses 65536. "
    "See docs/memory.md.")
flags.DEFINE_float(
    "memory_momentum", DEFAULTS["memory_momentum"],
    "Decay d of the memory network's moving average, m <- d*m + (1-d)*w "
    "after every optimizer step, in [0, 1) (used with --memory_size > 0).")
