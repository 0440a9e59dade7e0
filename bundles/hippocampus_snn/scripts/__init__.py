"""Task code of the ``hippocampus_snn`` bundle (MSD Task04 hippocampus, 2D slices, 3D evaluation).

The configs load it with ``"scripts": "$monai_snn.bundle.load_scripts(@bundle_root)"`` and use

* ``scripts.hippocampus``: validated NIfTI reading, fixed-box crops, MSD folder preparation, folds, download;
* ``scripts.slices``: axial slices of prepared volumes (training data) and re-stacking for 3D Dice;
* ``scripts.task``: what the configs call: ``prepare_data``, ``fold_split``, ``all_items``, ``make_slices``,
  ``make_loss``, ``encoding_range``;
* ``scripts.metrics``: 3D / 2D Dice of whole volumes for the evaluator (``dice_3d_mean``, ``dice_2d_mean``, ...);
* ``scripts.review``: the TensorBoard image panel of the evaluate stage (input | label | each model).

Python code imports it the same way: ``monai_snn.bundle.load_scripts("bundles/hippocampus_snn").task``.
"""
