"""Decoders: from a fingerprint back to photometry.

* :class:`QueryDecoder` (ours): predicts log-flux and its uncertainty at any
  (time, band) query, so a fingerprint draws a continuous light curve and the anomaly
  score is an error-weighted misfit of the real observations.
* :class:`PositionDecoder` (the seed's): reconstructs the input channels by sequence
  position; it cannot evaluate the light curve at an arbitrary time.
"""

from __future__ import annotations

import torch
from torch import nn

from encoder.model.blocks import FourierTime, mlp, transformer

N_BANDS = 6


class QueryDecoder(nn.Module):
    """An MLP of the (time, band) query, conditioned on the fingerprint.

    The fingerprint enters the first layer additively; with ``film`` it also scales and shifts every
    hidden layer (FiLM), which lets one small MLP draw sharper, more varied light curves. The FiLM
    projection starts at zero, so a decoder without it can be grown into one and fine-tuned.
    """

    def __init__(self, latent_dim: int, d_model: int = 128, n_hidden: int = 3, film: bool = False, **_: object):
        super().__init__()
        hidden = 2 * d_model
        self.time = FourierTime()
        self.band = nn.Embedding(N_BANDS, 16)
        self.context = nn.Linear(latent_dim, hidden)
        self.query = nn.Linear(self.time.dim + 16, hidden)
        self.body = mlp(hidden, hidden, 2, n_hidden=n_hidden)
        self.film = nn.Linear(latent_dim, 2 * hidden * n_hidden) if film else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, z: torch.Tensor, t: torch.Tensor, band: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, latent); t (B, Q) days since the first detection; band (B, Q) → mean, log_sigma (B, Q)."""
        q = self.query(torch.cat([self.time(t), self.band(band)], dim=-1))
        h = torch.nn.functional.silu(q + self.context(z).unsqueeze(1))
        if self.film is None:
            out = self.body(h)
        else:
            gammas_betas = self.film(z).unsqueeze(1).chunk(2 * (len(self.body) // 2), dim=-1)
            for i, layer in enumerate(self.body):
                h = layer(h)
                if isinstance(layer, nn.SiLU):  # after each hidden layer: h * (1 + gamma) + beta
                    j = 2 * (i // 2)
                    h = h * (1 + gammas_betas[j]) + gammas_betas[j + 1]
            out = h
        return out[..., 0], out[..., 1].clamp(-7, 2)


class PositionDecoder(nn.Module):
    """Latent broadcast to positions + learned position embedding, 2 transformer layers."""

    def __init__(
        self,
        latent_dim: int,
        d_model: int = 128,
        max_len: int = 256,
        n_layers: int = 2,
        n_heads: int = 8,
        dropout: float = 0.1,
        **_: object,
    ):
        super().__init__()
        self.inp = nn.Linear(latent_dim, d_model)
        self.pos = nn.Parameter(torch.randn(1, max_len, d_model) * 0.02)
        self.body = transformer(d_model, n_layers, n_heads, 4 * d_model, dropout)
        self.continuous = nn.Linear(d_model, 4)  # log_dt_first, log_dt_prev, logflux, logflux_err
        self.band = nn.Linear(d_model, N_BANDS)

    def forward(self, z: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.inp(z).unsqueeze(1) + self.pos[:, :length]
        x = self.body(x)
        return self.continuous(x), self.band(x)


DECODERS: dict[str, type[nn.Module]] = {"query": QueryDecoder, "position": PositionDecoder}
