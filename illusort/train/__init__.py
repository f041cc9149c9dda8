"""Training character embedders: `train(dirs, TrainConfig(method=...), out) -> card`.

Methods (one `Trainer`, `loop.py`; settings in `config.py`; what differs is in `methods.py`):

- ``triplet`` (the blog): ResNet18 -> Linear(512, 500) -> L2, TripletMarginLoss(margin=0.1,
  cosine), SGD momentum 0.9, lr 1e-3, weight decay 1e-6, the blog's batches (`sampler.py`).
- ``finetune`` (the paper's ft): VGG16 with a linear classifier over the training characters
  on fc2, cross-entropy; the embedding is fc1.
- ``deepcluster`` (the paper's dc): VGG16, k-means pseudo-labels of fc2 features every epoch
  (PCA-whitened, L2), a fresh classifier each epoch, batches uniform over pseudo-classes,
  lr 1e-4. Trains on unlabelled flat folders too. No Sobel input (colour is identity).
- ``ft+dc``: DeepCluster starting from a finetune checkpoint (``init=PATH``).

Labelled data is `DIR/<character>/<images>`, split by character 3:1:1 (train/dev/test); the
split, dev-set threshold and test scores go into the model card.
"""
from .data import TrainError
from .config import ARCHS, DEFAULTS, METHODS, TrainConfig
from .loop import Trainer, TrainingInterrupted, last_path, log_path, train
from .sampler import BlogBatchSampler

__all__ = ["train", "Trainer", "TrainConfig", "TrainError", "TrainingInterrupted", "BlogBatchSampler", "METHODS",
           "ARCHS", "DEFAULTS", "last_path", "log_path"]
