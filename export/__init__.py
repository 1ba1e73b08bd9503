"""The PyTorch side of fencli: the FERD model definitions, checkpoint import, ONNX export, training.

Nothing in :mod:`fencli` imports this package at run time; only ``fencli export`` and
``fencli train`` do, and they need the ``export`` extra (torch, onnx), except ``fencli train
--recipe adaptive``: :mod:`export.fixed`, :mod:`export.run` and :mod:`export.data` import no torch.
"""
