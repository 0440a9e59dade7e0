"""Task code of the ``em_snn`` bundle (ISBI 2012 EM membrane segmentation).

MONAI's ``ConfigWorkflow`` puts the bundle root on ``sys.path``, so the configs refer to ``scripts.em.X``
(datalist, hold-out and cross-validation splits, transforms, sliding-window inferer, metrics and their handlers).
"""
