"""The Keypoint R-CNN head (He et al. 2017, §5): a conv tower, a deconv and a 2× upsampling."""

from __future__ import annotations

import keras

from mrcnn_tf.modeling.layers import ConvTower, he_normal_fan_out
from mrcnn_tf.ops.keypoints import decode_heatmaps, decode_heatmaps_bicubic
from mrcnn_tf.registries import KEYPOINT_HEADS

DECODERS = ("subpixel", "torchvision")


@KEYPOINT_HEADS.register(injected=("num_keypoints",))
class KeypointRCNNHead(keras.layers.Layer):
    """``num_convs`` × (3×3 conv, ReLU), a 4×4 stride-2 deconv to K maps, then 2× bilinear.

    The paper's head: RoIAlign 14×14 → 8 × conv3×3(512) → deconv (14 → 28) → bilinear ×2
    (28 → 56): one heatmap of logits per keypoint, trained with a softmax over its ``m²``
    cells (:func:`mrcnn_tf.ops.keypoints.keypoint_targets`). As Detectron2's
    ``KRCNNConvDeconvUpsampleHead``: convs and the deconv ``kaiming_normal(fan_out)``, biases 0;
    the bilinear resize uses half-pixel centres (``align_corners=False``).

    Args:
        num_keypoints: K (the detector supplies it from the dataset).
        num_convs, conv_dim: the conv tower.
        norm: norm after each tower conv (``none``, ``bn``, ``gn``...).
        upsample_scale: the bilinear factor after the deconv (2 in the paper; 1 keeps 28×28).
        conv_algorithm: see :func:`mrcnn_tf.modeling.layers.conv3x3`.
        decode: how :meth:`decode` turns heatmaps into keypoints: ``subpixel`` (the peak cell
            refined by a parabola, score = its softmax probability;
            :func:`~mrcnn_tf.ops.keypoints.decode_heatmaps`) or ``torchvision`` (bicubic resize
            to the box's pixels, argmax pixel centre, score = the resized logit;
            :func:`~mrcnn_tf.ops.keypoints.decode_heatmaps_bicubic`, what converted torchvision
            models need to give torchvision's keypoints).
        decode_peaks, decode_window: the search of the ``torchvision`` decoding (see
            :func:`~mrcnn_tf.ops.keypoints.decode_heatmaps_bicubic`).

    Call:
        roi_features: ``[B, N, S, S, C]`` float32.

    Returns:
        ``[B, N, 2·s·S, 2·s·S, K]`` float32 heatmap logits over each RoI (``s`` =
        ``upsample_scale``), rows then columns, box-relative.
    """

    def __init__(
        self,
        num_keypoints: int,
        num_convs: int = 8,
        conv_dim: int = 512,
        norm: str = "none",
        upsample_scale: int = 2,
        conv_algorithm: str = "direct",
        decode: str = "subpixel",
        decode_peaks: int = 8,
        decode_window: int = 64,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if decode not in DECODERS:
            raise ValueError(f"KeypointRCNNHead decode must be one of {DECODERS}, got '{decode}'")
        self.decode_mode = decode
        self.decode_peaks = int(decode_peaks)
        self.decode_window = int(decode_window)
        if int(num_keypoints) < 1:
            raise ValueError(f"KeypointRCNNHead num_keypoints must be >= 1, got {num_keypoints}")
        if num_convs < 0 or upsample_scale < 1:
            raise ValueError("KeypointRCNNHead needs num_convs >= 0 and upsample_scale >= 1")
        self.num_keypoints = int(num_keypoints)
        self.num_convs = int(num_convs)
        self.conv_dim = int(conv_dim)
        self.norm = norm
        self.upsample_scale = int(upsample_scale)
        self.conv_algorithm = conv_algorithm
        self.tower = ConvTower(num_convs, conv_dim, norm, conv_algorithm, name="tower")
        self.deconv = keras.layers.Conv2DTranspose(
            self.num_keypoints,
            4,
            strides=2,
            padding="same",
            kernel_initializer=he_normal_fan_out(),
            name="deconv",
        )

    def build(self, input_shape):
        _, _, s, _, c = input_shape
        self.tower.build((None, s, s, c))
        self.deconv.build(self.tower.compute_output_shape((None, s, s, c)))

    def call(self, roi_features, training=None):
        ops = keras.ops
        shape = ops.shape(roi_features)
        x = ops.reshape(roi_features, (-1, shape[2], shape[3], shape[4]))
        x = self.deconv(self.tower(x, training=training))
        if self.upsample_scale > 1:
            size = x.shape[1] * self.upsample_scale
            x = keras.ops.image.resize(x, (size, size), interpolation="bilinear", antialias=False)
        out = ops.shape(x)
        return ops.reshape(x, (shape[0], shape[1], out[1], out[2], out[3]))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_keypoints=self.num_keypoints,
            num_convs=self.num_convs,
            conv_dim=self.conv_dim,
            norm=self.norm,
            upsample_scale=self.upsample_scale,
            conv_algorithm=self.conv_algorithm,
            decode=self.decode_mode,
            decode_peaks=self.decode_peaks,
            decode_window=self.decode_window,
        )
        return config

    def decode(self, heatmaps, boxes):
        """``[B, N, K, 3]`` ``(x, y, score)`` in the boxes' pixels from ``[B, N, S, S, K]`` logits
        over ``[B, N, 4]`` boxes (see ``decode`` in the class docstring)."""
        if self.decode_mode == "torchvision":
            return decode_heatmaps_bicubic(heatmaps, boxes, self.decode_window, self.decode_peaks)
        return decode_heatmaps(heatmaps, boxes)
