#!/usr/bin/env bash
# The label-efficiency story on the embedded digits, on CPU:
#   SimCLR pretraining -> linear eval / fine-tuning on a label fraction ->
#   distillation into a student on the unlabeled images,
#   against supervised training from scratch on the same subset and the
#   untrained encoder under the same linear evaluation.
#
# Usage: bash benchmarks/label_efficiency.sh [OUT_DIR] [LABEL_FRACTION]
# Writes OUT_DIR/label_efficiency.json and .md (one row per run, with its command).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/simclr_label_efficiency}
FRACTION=${2:-0.1}
STEPS=${STEPS:-300}
mkdir -p "$OUT"
COMMON="--dataset=digits --seed=0 --export_after_eval=true --log_every_steps=100"
: > "$OUT/commands.txt"

run() {  # name, flags...
  local name=$1; shift
  local cmd="python run.py --mode=train_then_eval $COMMON --model_dir=$OUT/$name $*"
  echo "$name: $cmd" | tee -a "$OUT/commands.txt"
  local start=$(date +%s)
  $cmd > "$OUT/$name.log" 2>&1 || { tail -3 "$OUT/$name.log"; exit 1; }
  echo "$name $(( $(date +%s) - start ))" >> "$OUT/seconds.txt"
  grep '^eval at' "$OUT/$name.log"
}

: > "$OUT/seconds.txt"
run pretrain
run linear_eval_pretrained --train_mode=finetune --fine_tune_after_block=4 \
    --checkpoint="$OUT/pretrain" --train_steps="$STEPS"
run linear_eval_untrained --train_mode=finetune --fine_tune_after_block=4 \
    --train_steps="$STEPS"
run finetune_subset --train_mode=finetune --checkpoint="$OUT/pretrain" \
    --label_fraction="$FRACTION" --train_steps="$STEPS"
run scratch_subset --train_mode=finetune \
    --label_subset_file="$OUT/finetune_subset/label_subset.txt" --train_steps="$STEPS"
run scratch_full --train_mode=finetune --train_steps="$STEPS"
run distill_student --train_mode=distill --teacher="$OUT/finetune_subset" \
    --train_steps="$STEPS"

python - "$OUT" "$FRACTION" <<'EOF'
import json, os, sys
out, fraction = sys.argv[1], sys.argv[2]
seconds = dict(line.split() for line in open(os.path.join(out, "seconds.txt")))
commands = dict(line.split(": ", 1) for line in open(os.path.join(out, "commands.txt")))
rows = []
for name in seconds:
    result = json.load(open(os.path.join(out, name, "result.json")))
    rows.append({"run": name, "top1": result["eval/label_top_1_accuracy"],
                 "knn_top1": result.get("eval/knn_top_1_accuracy"),
                 "seconds": int(seconds[name]), "command": commands[name].strip()})
json.dump({"label_fraction": float(fraction), "rows": rows},
          open(os.path.join(out, "label_efficiency.json"), "w"), indent=2)
lines = ["| run | linear/fine-tuned top-1 | kNN top-1 | wall s |", "|---|---|---|---|"]
lines += [f"| {r['run']} | {r['top1']:.4f} | {r['knn_top1']:.4f} | {r['seconds']} |" for r in rows]
open(os.path.join(out, "label_efficiency.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
