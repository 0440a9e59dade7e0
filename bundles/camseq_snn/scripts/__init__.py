"""Task code of the ``camseq_snn`` bundle (CamSeq01 road-scene segmentation, 11 classes).

MONAI's ``ConfigWorkflow`` puts the bundle root on ``sys.path``, so the configs refer to ``scripts.camseq.X``
(datalist, block split, transforms, void-ignoring loss, mIoU handlers).
"""
