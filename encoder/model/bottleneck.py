"""Bottlenecks: the fingerprint is the output of one of these (AE, VAE, VQ-VAE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AEBottleneck(nn.Module):
    """Deterministic autoencoder bottleneck: a linear projection to the latent."""

    def __init__(self, d_model: int, latent_dim: int, **_: object):
        super().__init__()
        self.proj = nn.Linear(d_model, latent_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        z = self.proj(h)
        return z, z, {}


class VAEBottleneck(nn.Module):
    """Gaussian bottleneck with a free-bits KL (per-dimension KL below ``free_bits`` nats is free)."""

    def __init__(self, d_model: int, latent_dim: int, free_bits: float = 0.1, **_: object):
        super().__init__()
        self.mu = nn.Linear(d_model, latent_dim)
        self.logvar = nn.Linear(d_model, latent_dim)
        self.free_bits = free_bits

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        mu, logvar = self.mu(h), self.logvar(h).clamp(-10, 10)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)  # (B, latent)
        kl = torch.clamp(kl.mean(0), min=self.free_bits).sum()
        return z, mu, {"kl": kl}


class VQBottleneck(nn.Module):
    """Vector quantiser with an EMA codebook and a straight-through gradient."""

    codebook: torch.Tensor  # buffers (register_buffer): typed here, nn.Module.__getattr__ is not
    cluster_size: torch.Tensor
    embed_sum: torch.Tensor

    def __init__(
        self,
        d_model: int,
        latent_dim: int,
        codebook_size: int = 512,
        decay: float = 0.99,
        commitment: float = 0.25,
        **_: object,
    ):
        super().__init__()
        self.proj = nn.Linear(d_model, latent_dim)
        self.decay, self.commitment, self.eps = decay, commitment, 1e-5
        self.register_buffer("codebook", torch.randn(codebook_size, latent_dim) * 0.1)
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed_sum", self.codebook.clone())

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        z_e = self.proj(h)
        codes = torch.cdist(z_e.detach(), self.codebook).argmin(-1)
        z_q = self.codebook[codes]
        if self.training:
            with torch.no_grad():
                onehot = F.one_hot(codes, self.codebook.shape[0]).type_as(z_e)
                self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
                self.embed_sum.mul_(self.decay).add_(onehot.t() @ z_e.detach(), alpha=1 - self.decay)
                n = self.cluster_size.sum()
                size = (self.cluster_size + self.eps) / (n + self.codebook.shape[0] * self.eps) * n
                self.codebook.copy_(self.embed_sum / size.unsqueeze(1))
        commit = self.commitment * F.mse_loss(z_e, z_q.detach())
        z_st = z_e + (z_q - z_e).detach()
        return z_st, z_st, {"vq": commit}


BOTTLENECKS: dict[str, type[nn.Module]] = {"ae": AEBottleneck, "vae": VAEBottleneck, "vqvae": VQBottleneck}
