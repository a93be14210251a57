"""Scores of a trained model on a split, computed a batch at a time so a split on disk is never loaded whole:
Dice/IoU per class, the mask autoencoder's ceiling, and the per-case Dice/HD95 report (psf.eval)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from psf.errors import PsfError
from psf.metrics import confusion_counts, report
from psf.train.augment import one_hot
from psf.train.data import SliceSet
from psf.train.stages import predict_probs

BATCH = 32


def split_report(predict: Callable[[np.ndarray], np.ndarray], data: SliceSet, labels: tuple[str, ...]) -> dict:
    """Dice and IoU per class over the real (unpadded) pixels of a split; `predict` maps a batch of images
    (b, C, S, S) to class indices (b, S, S)."""
    counts = np.zeros((len(labels), 3), np.int64)
    for start in range(0, len(data), BATCH):
        stop = min(start + BATCH, len(data))
        valid = data.valid[start:stop]
        counts += confusion_counts(predict(data.images[start:stop])[valid], data.labels[start:stop][valid], len(labels))
    return report(counts, list(labels))


def evaluate(nets, data: SliceSet, labels: tuple[str, ...], key=None) -> dict:
    """The deployed pipeline's Dice and IoU per class (client -> server -> client, in torch)."""
    return split_report(lambda x: predict_probs(nets, x, key=key).argmax(1), data, labels)


@torch.no_grad()
def mask_ae_ceiling(nets, data: SliceSet, labels: tuple[str, ...]) -> dict:
    """Dice of decode(encode(true mask)): the best the mapping net can reach with this mask autoencoder."""
    counts = np.zeros((len(labels), 3), np.int64)
    for start in range(0, len(data), BATCH):
        stop = min(start + BATCH, len(data))
        truth, valid = data.labels[start:stop], data.valid[start:stop]
        y = one_hot(torch.from_numpy(np.ascontiguousarray(truth)), len(labels))
        pred = nets.mask_decoder(nets.mask_encoder(y)).argmax(1).numpy()
        counts += confusion_counts(pred[valid], truth[valid], len(labels))
    return report(counts, list(labels))


def case_evaluation(nets, data: SliceSet, labels: tuple[str, ...], key=None) -> dict | None:
    """Dice and HD95 per test case and label, and their means (psf.eval: the report `psf score --report` writes);
    HD95 only with privacy-sf[eval] (medpy) installed. None for a split without case information."""
    if data.cases is None or data.volumes is None:
        return None
    from psf.eval import case_report, summarize

    try:
        from psf.metrics import hd95_implementation

        hd95_implementation()
        hd95 = True
    except PsfError:  # MissingDependency: Dice only
        hd95 = False
    cases = {}
    for v, (name, spacing, unit) in enumerate(data.cases):
        rows = np.flatnonzero(data.volumes == v)  # one case's slices are consecutive
        images, truth, valid = (a[rows[0] : rows[-1] + 1] for a in (data.images, data.labels, data.valid))
        pred = predict_probs(nets, np.ascontiguousarray(images), key=key).argmax(1).astype(np.uint8)
        r = np.flatnonzero(valid.any((0, 2)))
        c = np.flatnonzero(valid.any((0, 1)))
        window = (slice(None), r[:, None], c[None, :])
        cases[name] = case_report(pred[window], truth[window], list(labels), spacing, hd95=hd95, unit=unit)
    return summarize(cases, list(labels))
