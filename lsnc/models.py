"""Models that return ``(logits, features)``.

Every model has ``.classifier`` (the ``nn.Linear(d, K)`` with bias that maps the penultimate features to
logits) and ``.feature_dim`` (d). Features are the penultimate output (after global average pooling for the
ResNets), not normalized: exactly what the neural-collapse metrics are computed on.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck


class CifarResNet(nn.Module):
    """torchvision's ResNet with the CIFAR stem (conv1 = 3x3 stride 1 pad 1, no max-pool).

    Built from torchvision's own ``BasicBlock`` / ``Bottleneck`` with the stage widths
    ``base_width * (1, 2, 4, 8)``. With ``base_width=64`` the parameter tensors (names and shapes) are the
    ones of ``torchvision.models.resnet18/50`` after the paper's stem change (checked in the tests); smaller
    widths give the width-scaled ResNets used for CPU runs.
    """

    def __init__(self, block: type[nn.Module], layers: list[int], num_classes: int,
                 base_width: int = 64, in_channels: int = 3):
        super().__init__()
        self.inplanes = base_width
        self.conv1 = nn.Conv2d(in_channels, base_width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        widths = [base_width * m for m in (1, 2, 4, 8)]
        self.layer1 = self._make_layer(block, widths[0], layers[0], stride=1)
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = widths[3] * block.expansion
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        # torchvision's initialisation (the Linear keeps PyTorch's default, as in torchvision).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        features = torch.flatten(self.avgpool(x), 1)
        return self.classifier(features), features


#: hidden layers of the MLP (``build_model("mlp", ...)``)
MLP_DEPTH = 3


class MLP(nn.Module):
    """Fully connected net for vector inputs (mnist1d): [Linear-BatchNorm-ReLU] x depth, then the classifier."""

    def __init__(self, in_features: int, num_classes: int, width: int = 256, depth: int = MLP_DEPTH):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(in_features if i == 0 else width, width), nn.BatchNorm1d(width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.feature_dim = width
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x.flatten(1))
        return self.classifier(features), features


_RESNETS = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet50": (Bottleneck, [3, 4, 6, 3])}
MODELS = ("resnet18", "resnet50", "mlp")
#: The models that need image inputs (C, H, W); the MLP takes images (flattened) and vectors alike.
IMAGE_MODELS = frozenset(_RESNETS)
#: the width a model has when none is given: the paper's ResNets' base width, the MLP's hidden width
DEFAULT_WIDTH = {"resnet18": 64, "resnet50": 64, "mlp": 256}


def model_depth(name: str) -> int | None:
    """Layers with weights from input to logits: 18 and 50 for the ResNets (their names), the MLP's hidden layers plus
    its classifier; None for an unknown model. The book's depth axis compares networks by it."""
    return {"resnet18": 18, "resnet50": 50, "mlp": MLP_DEPTH + 1}.get(name)


def model_width(name: str, width: int | None = None) -> int | None:
    """The width ``build_model(name, ..., width=width)`` builds: ``width``, or the model's default when it is
    None (a config of the paper's presets leaves it None: ResNet base width 64). None for an unknown model."""
    return width or DEFAULT_WIDTH.get(name)


def feature_dim(name: str, width: int | None = None) -> int:
    """d, the feature dimension of ``build_model(name, ..., width=width)``, without building it (ResNet-18:
    8 x base width, 512 for the paper's; ResNet-50: 4x that, 2048; MLP: its width)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    if width is not None and width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    width = model_width(name, width)
    return width if name == "mlp" else width * 8 * _RESNETS[name][0].expansion


@functools.lru_cache(maxsize=None)
def parameter_count(name: str, num_classes: int, input_shape: tuple[int, ...], width: int | None = None) -> int:
    """How many parameters ``build_model`` gives (weights, biases, BatchNorm's affine ones; not its running
    statistics), counted on the meta device without allocating them."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(name, num_classes, tuple(input_shape), width).parameters())


def build_model(name: str, num_classes: int, input_shape: tuple[int, ...], width: int | None = None) -> nn.Module:
    """Build a model by name.

    ``width`` is the ResNet base width (64 = the paper's ResNet; 16 or 32 for CPU-scale runs) or the MLP's
    hidden width (default 256). ``input_shape`` is one sample's shape: (C, H, W) for images, (F,) for vectors.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    if width is not None and width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    if name == "mlp":
        in_features = 1
        for s in input_shape:
            in_features *= s
        return MLP(in_features, num_classes, width=model_width(name, width))
    if len(input_shape) != 3:
        raise ValueError(f"{name} needs image inputs (C, H, W); this dataset gives shape {tuple(input_shape)}. "
                         "Use --model mlp for vector data.")
    block, layers = _RESNETS[name]
    return CifarResNet(block, layers, num_classes, base_width=model_width(name, width), in_channels=input_shape[0])
