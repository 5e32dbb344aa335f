"""Box geometry the runtimes share: letterboxing an image into a model input and back, IoU, NMS.

Boxes are (y1, x1, y2, x2) rows; a letterbox keeps the aspect ratio, fills the longer side and centres
the image, so a runtime maps its boxes back through the same `Letterbox` it drew.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from inference_module.resize import resize_rgb

__all__ = ["Letterbox", "class_aware_nms", "iou", "letterbox_into", "nms"]


@dataclass(frozen=True, slots=True)
class Letterbox:
    """Where the resized image sits inside the model input, in input pixels."""

    input_width: int
    input_height: int
    left: int
    top: int
    width: int
    height: int

    @classmethod
    def fit(cls, image_width: int, image_height: int, input_width: int, input_height: int) -> Letterbox:
        """Aspect kept, the longer side filling the input, centred."""
        scale = min(input_width / image_width, input_height / image_height)
        width = min(input_width, max(1, round(image_width * scale)))
        height = min(input_height, max(1, round(image_height * scale)))
        return cls(
            input_width,
            input_height,
            (input_width - width) // 2,
            (input_height - height) // 2,
            width,
            height,
        )

    def unmap(self, boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Boxes (y1, x1, y2, x2) as fractions of the input → fractions of the original image."""
        ys = (boxes[:, 0::2] * self.input_height - self.top) / self.height
        xs = (boxes[:, 1::2] * self.input_width - self.left) / self.width
        return np.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1]], axis=1).astype(np.float32)


def iou(box: npt.NDArray[np.float32], others: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    top = np.maximum(box[0], others[:, 0])
    left = np.maximum(box[1], others[:, 1])
    bottom = np.minimum(box[2], others[:, 2])
    right = np.minimum(box[3], others[:, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)


def letterbox_into(tensor: npt.NDArray[np.float32], image: Image.Image, pad: np.float32) -> Letterbox:
    """Write `image` letterboxed into an NCHW float tensor [1,3,H,W] as RGB 0..1, `pad` around it.

    Only the border strips are re-filled, so a per-thread buffer is reused without clearing it.
    """
    _, _, net_h, net_w = tensor.shape
    box = Letterbox.fit(image.width, image.height, net_w, net_h)
    top, left, new_h, new_w = box.top, box.left, box.height, box.width
    pixels = resize_rgb(np.asarray(image), new_w, new_h)
    tensor[:, :, :top, :] = pad
    tensor[:, :, top + new_h :, :] = pad
    tensor[:, :, top : top + new_h, :left] = pad
    tensor[:, :, top : top + new_h, left + new_w :] = pad
    np.multiply(
        pixels.transpose(2, 0, 1),
        np.float32(1 / 255),
        out=tensor[0, :, top : top + new_h, left : left + new_w],
    )
    return box


def nms(
    boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou_threshold: float, max_output: int
) -> npt.NDArray[np.int64]:
    """Greedy NMS: indices of the kept boxes, best score first; a box overlapping a kept one by more
    than `iou_threshold` is dropped."""
    remaining = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while remaining.size and len(kept) < max_output:
        best = int(remaining[0])
        kept.append(best)
        remaining = remaining[1:][iou(boxes[best], boxes[remaining[1:]]) <= iou_threshold]
    return np.asarray(kept, np.int64)


def class_aware_nms(
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    class_ids: npt.NDArray[np.int64],
    iou_threshold: float,
    max_output: int,
) -> npt.NDArray[np.int64]:
    """NMS within each class only: boxes of different classes never suppress each other.

    Each class's boxes are shifted by a distance larger than all boxes span, so one NMS pass suffices.
    """
    if boxes.shape[0] == 0:
        return np.zeros((0,), np.int64)
    span = float(boxes.max() - boxes.min()) + 1.0
    shifted = boxes + (class_ids.astype(np.float32) * np.float32(span))[:, None]
    return nms(shifted.astype(np.float32), scores, iou_threshold, max_output)
