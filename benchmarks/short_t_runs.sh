#!/bin/bash
# The runs behind the hippocampus "Short T and energy" tables (issue 13), as they ran on 2026-12-05 on a 2-core CPU
# (one thread per job, several jobs at a time). Every command is resumable; run from the repository root.
# Outputs go to runs/; the result JSONs are then kept in bundles/hippocampus_snn/docs/results/short_t/
# (apps.keep_results) and the tables written by benchmarks/qcfs_frontier.py.
set -e
B=bundles/hippocampus_snn
CV="python -m monai_snn.apps.cross_validation --bundle_root $B"
export OMP_NUM_THREADS=1

# 1. QCFS ANN (multi-threshold levels, design T = 2) from scratch, converted and evaluated at T = 2 and 1 (weight 0)
#    (fold 0 ran first with --stages train_ann convert finetune evaluate finetune_steps=2 "steps_sweep=[1,2,4]"; its
#    pooled-energy evaluation is the evaluate stage of a folder linking those outputs, docs: qcfs_w0/fold0)
#    (PyTorch's default initial weights: ann_weight_init=None; since step 8 a QCFS ANN from scratch starts He-normal)
$CV --output_dir runs/hippo_qcfs_t2 --folds 0 1 2 3 4 --stages train_ann convert evaluate \
  --set activation=qcfs design_steps=2 ann_weight_init=None "steps_sweep=[1]" "converted_extra_steps=[1]"

# 2. activity penalty: 8 more epochs from each fold's QCFS ANN; fold 0 at several weights, folds 1-4 at 0.3
penalized() {  # weight output_dir fold
  $CV --output_dir "$2" --folds "$3" --stages train_ann convert evaluate \
    --set activation=qcfs design_steps=2 activity_weight="$1" \
    "ann_init=runs/hippo_qcfs_t2/fold$3/train_ann/ckpt/best_model.pt" train_ann:learning_rate=0.0003 \
    train_ann:max_epochs=8 "steps_sweep=[1]" "converted_extra_steps=[1]"
}
for w in 0.01 0.03 0.1 0.3; do penalized $w runs/hippo_act_w$w 0; done
for f in 1 2 3 4; do penalized 0.3 runs/hippo_act5_w0.3 $f; done

# 3. spike fine-tuning at T = 2 and 1 from the fold-0 model of weight 0.3
python -m monai_snn.apps.variants --bundle_root $B --run_dir runs/hippo_act_w0.3 \
  --variants $B/configs/ablations/short_t_finetuning.json --output_dir runs/hippo_short_t_ft \
  --stages convert finetune evaluate --metrics dice_3d_mean dice_2d_mean \
  --set activation=qcfs design_steps=2 activity_weight=0.3 finetune:max_epochs=3 finetune:learning_rate=0.00003 \
  "eval_extra_steps=[]"

# 4. ship the fold-0 T = 2 model and evaluate every shipped model on fold 0's 42 test volumes
python -m monai_snn.apps.ship_models --bundle_root $B --run_dir runs/hippo_act_w0.3 --fold 0 \
  --snn convert:finetuned_t2
python - <<'PY'
import json, os
from monai_snn.bundle import load_scripts
s = load_scripts("bundles/hippocampus_snn")
dl = "runs/hippo_qcfs_t2/prep/datalist.json"
d = json.load(open(dl))
test = s.task.fold_split(dl, 0, 5, 0.125, 0)["test"]
d.update(training=[{"image": os.path.abspath(t["image"]), "label": os.path.abspath(t["label"])} for t in test],
         numTraining=len(test), num_folds=None)
json.dump(d, open("runs/hippo_fold0_test_datalist.json", "w"), indent=1)
PY
python -m monai.bundle run --meta_file $B/configs/metadata.json --logging_file $B/configs/logging.conf \
  --bundle_root $B --config_file "['$B/configs/common.json','$B/configs/evaluate.json']" \
  --datalist runs/hippo_fold0_test_datalist.json --output_dir runs/hippo_shipped_fold0

# 5. fold 2 again, the QCFS ANN started from the fold's float ANN (clipping levels from its activations), penalized
#    from the first epoch: worse than from scratch (T = 2 3D Dice 0.802 at 0.20x vs 0.835 at 0.086x)
$CV --output_dir runs/hippo_float_f2 --folds 2 --stages train_ann
$CV --output_dir runs/hippo_act_fromfloat_w0.3 --folds 2 --stages train_ann convert evaluate \
  --set activation=qcfs design_steps=2 activity_weight=0.3 \
  "ann_init=runs/hippo_float_f2/fold2/train_ann/ckpt/best_model.pt" train_ann:learning_rate=0.0003 \
  train_ann:max_epochs=8 "steps_sweep=[1]" "converted_extra_steps=[1]"

# 6. fold 2 in two steps from the float ANN: QCFS without the penalty (12 epochs), then penalized (8 epochs)
$CV --output_dir runs/hippo_2step_s1 --folds 2 --stages train_ann convert \
  --set activation=qcfs design_steps=2 activity_weight=0.0 \
  "ann_init=runs/hippo_float_f2/fold2/train_ann/ckpt/best_model.pt" train_ann:learning_rate=0.0003 \
  train_ann:max_epochs=12 "steps_sweep=[1]"
$CV --output_dir runs/hippo_2step_w0.3 --folds 2 --stages train_ann convert evaluate \
  --set activation=qcfs design_steps=2 activity_weight=0.3 \
  "ann_init=runs/hippo_2step_s1/fold2/train_ann/ckpt/best_model.pt" train_ann:learning_rate=0.0003 \
  train_ann:max_epochs=8 "steps_sweep=[1]" "converted_extra_steps=[1]"

# 7. DRIVE (issue 13's DRIVE target): QCFS ANNs from the shipped float ANN, design T = 2 (then penalized) and T = 1
D=bundles/drive_snn
DCV="python -m monai_snn.apps.cross_validation --bundle_root $D"
$DCV --output_dir runs/drive_qcfs_s1 --folds 0 --stages train_ann convert \
  --set activation=qcfs design_steps=2 ann_init=$D/models/ann.pt train_ann:learning_rate=0.0003 \
  train_ann:max_epochs=12 "steps_sweep=[1,4]"
$DCV --output_dir runs/drive_qcfs_w0.3 --folds 0 --stages train_ann convert \
  --set activation=qcfs design_steps=2 activity_weight=0.3 \
  ann_init=runs/drive_qcfs_s1/fold0/train_ann/ckpt/best_model.pt train_ann:learning_rate=0.0003 \
  train_ann:max_epochs=8 "steps_sweep=[1,4]"
$DCV --output_dir runs/drive_qcfs_d1 --folds 0 --stages train_ann convert \
  --set activation=qcfs design_steps=1 ann_init=$D/models/ann.pt train_ann:learning_rate=0.0003 \
  train_ann:max_epochs=12 "steps_sweep=[2,4]"
for r in qcfs_s1 qcfs_w0.3 qcfs_d1; do
  python -m monai_snn.apps.keep_results --run_dir runs/drive_$r --output_dir $D/docs/results/short_t/$r --folds 0
done


# 8. (2026-12-06) the recipe of steps 1 + 2 with He-normal initial weights for the QCFS ANN (ann_weight_init=kaiming),
#    every fold, fold 2 first. Under PyTorch's default weights the deep QCFS layers round their small inputs to zero
#    (tests/test_qcfs.py), which is how fold 2's step 1 stalled (validation 2D Dice 0.54 after 20 epochs).
he_fold() {  # fold
  $CV --output_dir runs/hippo_qcfs_he5 --folds "$1" --stages train_ann convert evaluate \
    --set activation=qcfs design_steps=2 ann_weight_init=kaiming "steps_sweep=[1]" "converted_extra_steps=[1]"
  $CV --output_dir runs/hippo_act_he5_w0.3 --folds "$1" --stages train_ann convert evaluate \
    --set activation=qcfs design_steps=2 activity_weight=0.3 \
    "ann_init=runs/hippo_qcfs_he5/fold$1/train_ann/ckpt/best_model.pt" train_ann:learning_rate=0.0003 \
    train_ann:max_epochs=8 "steps_sweep=[1]" "converted_extra_steps=[1]"
}
for f in 2 0 1; do he_fold $f; done
# folds 4 and 3 ran at the same time as 0 and 1, in their own folders (one runner per folder):
# runs/hippo_qcfs_he5b and runs/hippo_act_he5b_w0.3, the same commands otherwise. Since then ann_weight_init
# defaults to "kaiming" for a QCFS ANN trained from scratch, so the override is no longer needed.
