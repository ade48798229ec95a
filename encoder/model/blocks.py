"""Small named building blocks shared by the encoder and the decoders."""

from __future__ import annotations

import math

import torch
from torch import nn


class Time2Vec(nn.Module):
    """Time2Vec (Kazemi et al. 2019): one linear and ``dim - 1`` periodic features of a scalar time."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(1, 1)
        self.periodic = nn.Linear(1, dim - 1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # (...,) -> (..., dim)
        t = t.unsqueeze(-1)
        return torch.cat([self.linear(t), torch.sin(self.periodic(t))], dim=-1)


class FourierTime(nn.Module):
    """Fixed multi-scale sin/cos features of a signed time in days (periods 1 d .. 1000 d).

    Used by the query decoder, which must evaluate a light curve at any time, before
    the first detection too; fixed frequencies extrapolate more predictably than learned ones.
    """

    omega: torch.Tensor  # a buffer (register_buffer): typed here, nn.Module.__getattr__ is not

    def __init__(self, n_freq: int = 12, min_period: float = 1.0, max_period: float = 1000.0):
        super().__init__()
        periods = torch.logspace(math.log10(min_period), math.log10(max_period), n_freq)
        self.register_buffer("omega", 2 * math.pi / periods, persistent=False)
        self.dim = 2 * n_freq + 2

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # (...,) days -> (..., dim)
        phase = t.unsqueeze(-1) * self.omega
        signed_log = torch.sign(t) * torch.log1p(t.abs())
        return torch.cat([torch.sin(phase), torch.cos(phase), (t / 100.0).unsqueeze(-1), signed_log.unsqueeze(-1)], -1)


def mlp(d_in: int, d_hidden: int, d_out: int, n_hidden: int = 1, dropout: float = 0.0) -> nn.Sequential:
    """Linear → SiLU (→ Dropout) blocks ending in a Linear."""
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(n_hidden):
        layers += [nn.Linear(d, d_hidden), nn.SiLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        d = d_hidden
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


def transformer(d_model: int, n_layers: int, n_heads: int, d_ff: int, dropout: float) -> nn.TransformerEncoder:
    """A pre-norm transformer encoder stack (batch first)."""
    layer = nn.TransformerEncoderLayer(
        d_model, n_heads, d_ff, dropout, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
