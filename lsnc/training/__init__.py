"""Training: the objective and one epoch (:mod:`.step`), device/data/network setup (:mod:`.prepare`), one
network or K fused ones with their optimizer (:mod:`.engine`, :mod:`.fused`), the step captured as a CUDA graph
(:mod:`.graphs`), K networks on CUDA streams (:mod:`.streams`), the loop over epochs (:mod:`.loop`), and one
evaluation pass (:mod:`.evaluate`)."""

from .loop import NonFiniteLoss, train, train_many

__all__ = ["NonFiniteLoss", "train", "train_many"]
