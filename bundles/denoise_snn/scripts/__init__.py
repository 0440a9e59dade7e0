"""Task code of the ``denoise_snn`` bundle (blind Gaussian denoising, grey and colour).

MONAI's ``ConfigWorkflow`` puts the bundle root on ``sys.path``, so the configs refer to ``scripts.denoise.X``
(data sets, splits, noise, transforms, metrics, output files) and ``scripts.evaluation.X`` (the evaluation at
several noise levels).
"""
