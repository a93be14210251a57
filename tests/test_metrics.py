import numpy as np

from psf.metrics import confusion_counts, dice_iou, report


def test_dice_and_iou_on_known_counts():
    truth = np.array([0, 1, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 2, 2, 0])
    dice, iou = dice_iou(confusion_counts(pred, truth, 3))
    np.testing.assert_allclose(dice, [2 / 3, 0.8, 0.5])
    np.testing.assert_allclose(iou, [0.5, 2 / 3, 1 / 3])
    assert report(confusion_counts(pred, truth, 3), ["o", "a", "b"])["mean_dice"] == round((0.8 + 0.5) / 2, 4)
