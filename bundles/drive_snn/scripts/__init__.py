"""Task code of the ``drive_snn`` bundle (DRIVE retinal vessel segmentation).

MONAI's ``ConfigWorkflow`` puts the bundle root on ``sys.path``, so the configs refer to ``scripts.drive.X``
(datalist, preprocessing, patch sampling) and ``scripts.metrics.X`` (FOV-masked metrics).
"""
