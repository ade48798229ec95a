"""Image towers: cutout stamps (3, 63, 63) → one embedding added to the CLS vector."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class SimpleCNN(nn.Module):
    """A small 4-block CNN trained from scratch (~0.26M parameters at d_model=128)."""

    def __init__(self, d_model: int, width: int = 48, **_: object):
        super().__init__()
        chans = [3, width // 2, width, width * 2, width * 2]
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.GELU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(chans[-1], d_model)

    def forward(self, stamps: torch.Tensor) -> torch.Tensor:  # (B, 3, 63, 63) -> (B, d_model)
        return self.head(self.features(stamps).mean(dim=(2, 3)))


class ZoobotTower(nn.Module):
    """ConvNeXt-pico (timm) as in Zoobot; weights from a local file only, never from a hub.

    ``weights`` is a state dict saved from a Zoobot/timm ConvNeXt-pico encoder
    (``torch.save(model.state_dict(), path)``). Stamps are upsampled 63 → 224.
    """

    def __init__(self, d_model: int, weights: str | None = None, freeze: bool = True, **_: object):
        super().__init__()
        import timm  # imported here: only this tower needs timm

        self.backbone = timm.create_model("convnext_pico", pretrained=False, num_classes=0, in_chans=3)
        if weights:
            state = torch.load(Path(weights), map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            state = {k.removeprefix("encoder.").removeprefix("model."): v for k, v in state.items()}
            missing, _unexpected = self.backbone.load_state_dict(state, strict=False)
            if len(missing) > len(self.backbone.state_dict()) // 2:
                raise ValueError(f"{weights}: not a ConvNeXt-pico state dict ({len(missing)} weights missing)")
        self.frozen = freeze
        if freeze:
            self.backbone.requires_grad_(False)
        features = self.backbone.num_features  # every timm model has it; nn.Module types it Tensor | Module
        if not isinstance(features, int):
            raise TypeError(f"convnext_pico's num_features is a {type(features).__name__}, not an int")
        self.head = nn.Linear(features, d_model)

    def forward(self, stamps: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(stamps, size=(224, 224), mode="bilinear", align_corners=False)
        if self.frozen:
            self.backbone.eval()
            with torch.no_grad():
                return self.head(self.backbone(x))
        return self.head(self.backbone(x))


IMAGE_TOWERS: dict[str, type[nn.Module]] = {"simple": SimpleCNN, "zoobot": ZoobotTower}
