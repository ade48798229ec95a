"""The RTF model: a transformer over detections whose CLS vector, plus stamp and
physics-feature embeddings, passes a bottleneck to become the fingerprint.

Read top to bottom: :class:`ModelConfig` (all choices, as data), then
:class:`RTFModel` (``embed`` → ``encode`` → heads and decoder → ``loss``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from encoder.batching import Batch
from encoder.model.blocks import Time2Vec, mlp, transformer
from encoder.model.bottleneck import BOTTLENECKS
from encoder.model.decoder import DECODERS
from encoder.model.image import IMAGE_TOWERS

IGNORE = -100  # label index for "class unknown"
# Fixed affine standardisation of the photometric channels (log dt first, log dt prev,
# logflux = -0.4 mag around mag 19, logflux_err); the one-hot bands stay as they are.
PHOT_SHIFT = (2.0, 1.0, -7.6, 0.04, 0, 0, 0, 0, 0, 0)
PHOT_SCALE = (1.5, 1.0, 0.6, 0.04, 1, 1, 1, 1, 1, 1)


@dataclass
class ModelConfig:
    phot_channels: int = 10
    meta_channels: int = 30
    use_metadata: bool = True
    use_images: bool = False
    image_backbone: str = "simple"  # simple | zoobot
    image_weights: str | None = None  # local Zoobot/timm state dict (zoobot only)
    freeze_backbone: bool = True
    use_gp: bool = True
    gp_dim: int = 0  # number of physics/GP features (values; a mask of equal size is appended)
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 8
    d_ff: int = 512
    dropout: float = 0.3
    max_len: int = 256
    mode: str = "ae"  # ae | vae | vqvae
    latent_dim: int = 64
    free_bits: float = 0.1
    codebook_size: int = 512
    decoder: str = "query"  # query | position
    decoder_film: bool = False  # query decoder: the fingerprint also modulates every hidden layer
    coarse_classes: list[str] = field(default_factory=list)
    fine_classes: list[str] = field(default_factory=list)
    # Served fingerprints: with w > 0 the fingerprint at unit length with w x the fine-class
    # probabilities appended (a class-aware metric for neighbour search; training is unchanged).
    posterior_weight: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        return cls(**d)

    @property
    def served_dim(self) -> int:
        """Length of the fingerprints inference serves (see :attr:`posterior_weight`)."""
        return self.latent_dim + (len(self.fine_classes) if self.posterior_weight > 0 else 0)

    @property
    def token_channels(self) -> int:
        return self.phot_channels + (2 * self.meta_channels if self.use_metadata else 0)


class RTFModel(nn.Module):
    phot_shift: torch.Tensor  # buffers (register_buffer): typed here, nn.Module.__getattr__ is not
    phot_scale: torch.Tensor

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.posterior_weight < 0 or (cfg.posterior_weight > 0 and not cfg.fine_classes):
            raise ValueError(f"posterior_weight {cfg.posterior_weight}: must be >= 0, and > 0 only with a fine head")
        self.cfg = cfg
        d = cfg.d_model
        self.register_buffer("phot_shift", torch.tensor(PHOT_SHIFT), persistent=False)
        self.register_buffer("phot_scale", torch.tensor(PHOT_SCALE), persistent=False)
        self.token = nn.Linear(cfg.token_channels, d)
        self.time = Time2Vec(d)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.body = transformer(d, cfg.n_layers, cfg.n_heads, cfg.d_ff, cfg.dropout)
        self.norm = nn.LayerNorm(d)
        self.image = (
            IMAGE_TOWERS[cfg.image_backbone](d, weights=cfg.image_weights, freeze=cfg.freeze_backbone)
            if cfg.use_images
            else None
        )
        self.gp = mlp(2 * cfg.gp_dim, d, d) if cfg.use_gp and cfg.gp_dim else None
        self.bottleneck = BOTTLENECKS[cfg.mode](
            d, cfg.latent_dim, free_bits=cfg.free_bits, codebook_size=cfg.codebook_size
        )
        self.decoder = DECODERS[cfg.decoder](cfg.latent_dim, d_model=d, max_len=cfg.max_len, film=cfg.decoder_film)
        self.coarse_head = mlp(cfg.latent_dim, cfg.latent_dim, len(cfg.coarse_classes)) if cfg.coarse_classes else None
        self.fine_head = mlp(cfg.latent_dim, cfg.latent_dim, len(cfg.fine_classes)) if cfg.fine_classes else None

    # ---------------------------------------------------------------- encoder
    def encode(self, b: Batch) -> torch.Tensor:
        """CLS summary of the detections, plus stamp and physics-feature embeddings → (B, d)."""
        phot = (b.phot - self.phot_shift) / self.phot_scale
        x = phot
        if self.cfg.use_metadata:
            if b.meta is None:
                raise ValueError("the model reads metadata, and the batch has none")
            x = torch.cat([phot, b.meta], dim=-1)
        tokens = self.token(x) + self.time(b.phot[..., 0])
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        pad = F.pad(b.pad_mask, (1, 0), value=False)
        key_mask: torch.Tensor | None = pad
        if not (torch.jit.is_tracing() or torch.compiler.is_exporting()) and not pad.any():
            key_mask = None  # nothing padded (one light curve, or equal lengths): attention without a mask is faster
        h = self.norm(self.body(tokens, src_key_padding_mask=key_mask)[:, 0])
        if self.image is not None and b.stamps is not None and b.has_stamp is not None:
            h = h + self.image(b.stamps) * b.has_stamp.unsqueeze(1)
        if self.gp is not None and b.objfeat is not None:
            h = h + self.gp(b.objfeat)
        return h

    def forward(self, b: Batch) -> dict[str, torch.Tensor]:
        z, fingerprint, aux = self.bottleneck(self.encode(b))
        out: dict[str, torch.Tensor] = {"z": z, "fingerprint": fingerprint, **aux}
        if self.coarse_head is not None:
            out["coarse_logits"] = self.coarse_head(z)
        if self.fine_head is not None:
            out["fine_logits"] = self.fine_head(z)
        return out

    # ---------------------------------------------------------------- decoder
    def reconstruct(self, z: torch.Tensor, t: torch.Tensor, band: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Query decoder only: predicted log-flux (-0.4 mag) and its log-sigma at (t, band)."""
        if self.cfg.decoder != "query":
            raise ValueError("only the query decoder evaluates a light curve at arbitrary times")
        return self._query(z, t, band)

    def _query(self, z: torch.Tensor, t: torch.Tensor, band: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Query decoder in physical units: its outputs are standardised log-flux and log-sigma."""
        mean, log_sigma = self.decoder(z, t, band)
        return mean * self.phot_scale[2] + self.phot_shift[2], log_sigma + torch.log(self.phot_scale[2])

    def misfit(self, z: torch.Tensor, b: Batch) -> torch.Tensor:
        """Per-object reconstruction misfit of the observed points (the seed's anomaly score, improved).

        Query decoder: mean of squared residuals in units of the combined error
        (measurement ⊕ predicted model uncertainty); position decoder: the seed's MSE.
        """
        valid = ~b.pad_mask
        if self.cfg.decoder == "query":
            mean, log_sigma = self._query(z, b.t_rel, b.band)
            var = b.phot[..., 3].pow(2) + torch.exp(2 * log_sigma) + 1e-4
            chi2 = (b.phot[..., 2] - mean).pow(2) / var
            return (chi2 * valid).sum(1) / valid.sum(1).clamp(min=1)
        cont, _ = self.decoder(z, b.phot.shape[1])
        mse = (cont - self._standard(b)).pow(2).mean(-1)
        return (mse * valid).sum(1) / valid.sum(1).clamp(min=1)

    def _standard(self, b: Batch) -> torch.Tensor:
        """The 4 continuous photometric channels, standardised: the position decoder's targets."""
        return (b.phot[..., :4] - self.phot_shift[:4]) / self.phot_scale[:4]

    # ---------------------------------------------------------------- training objective
    def loss(
        self, b: Batch, out: dict[str, torch.Tensor], cls_weight: float = 0.5, contrastive_weight: float = 0.0
    ) -> dict[str, torch.Tensor]:
        z, valid = out["z"], ~b.pad_mask
        parts: dict[str, torch.Tensor] = {}
        if self.cfg.decoder == "query":
            mean, log_sigma = self._query(z, b.t_rel, b.band)
            # Gaussian NLL with the measurement error added in quadrature: well-measured points weigh more
            var = b.phot[..., 3].pow(2) + torch.exp(2 * log_sigma) + 1e-4
            resid2 = (b.phot[..., 2] - mean).pow(2)
            nll = 0.5 * (resid2 / var + torch.log(var))
            # A learned variance alone lets the model explain misfits away with a broad sigma
            # (Seitzer et al. 2022); the plain squared error in standard units keeps the mean honest.
            fit = nll + resid2 / self.phot_scale[2] ** 2
            parts["recon"] = (fit * valid).sum() / valid.sum()
            parts["mse"] = ((resid2 * valid).sum() / valid.sum()).detach()
        else:
            cont, band_logits = self.decoder(z, b.phot.shape[1])
            mse = (cont - self._standard(b)).pow(2).mean(-1)
            ce = F.cross_entropy(band_logits.transpose(1, 2), b.band, reduction="none")
            parts["recon"] = ((mse + 0.1 * ce) * valid).sum() / valid.sum()
            parts["mse"] = ((mse * valid).sum() / valid.sum()).detach()
        for name in ("coarse", "fine"):
            logits, y = out.get(f"{name}_logits"), getattr(b, f"y_{name}")
            if logits is not None and y is not None and (y != IGNORE).any():
                parts[name] = cls_weight * F.cross_entropy(logits, y, ignore_index=IGNORE)
        if contrastive_weight and b.y_fine is not None and (b.y_fine != IGNORE).sum() > 1:
            parts["contrastive"] = contrastive_weight * supervised_contrastive(out["fingerprint"], b.y_fine)
        for name in ("kl", "vq"):
            if name in out:
                parts[name] = out[name] * (0.01 if name == "kl" else 1.0)
        terms = [v for k, v in parts.items() if k != "mse"]
        parts["total"] = sum(terms[1:], terms[0])  # as sum(terms) ("recon" first), less its int start 0
        return parts


def supervised_contrastive(fingerprint: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) on the cosine of fingerprints: each labelled
    fingerprint is pulled towards those of its class in the batch and pushed from the others, so the
    labels shape the geometry that neighbour search uses (a classifier head alone need not)."""
    keep = labels != IGNORE
    z, y = F.normalize(fingerprint[keep], dim=-1), labels[keep]
    self_pair = torch.eye(len(y), dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(self_pair, float("-inf"))
    positive = (y[:, None] == y[None, :]) & ~self_pair
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    has = positive.any(1)
    if not has.any():
        return sim.new_zeros(())
    return -(log_prob.masked_fill(~positive, 0.0).sum(1)[has] / positive.sum(1)[has]).mean()


def inference_outputs(model: RTFModel, batch: Batch) -> dict[str, torch.Tensor]:
    """What inference serves of one batch: fingerprint, misfit, class probabilities per head and
    the latent ``z`` (the decoder's input), in this order: the exported graph's outputs. With
    ``posterior_weight`` w > 0 the served fingerprint is the model's at unit length with w x its
    fine-class probabilities appended."""
    out = model(batch)
    res = {"fingerprint": out["fingerprint"], "misfit": model.misfit(out["z"], batch)}
    for head in ("coarse", "fine"):
        if f"{head}_logits" in out:
            res[f"{head}_probs"] = torch.softmax(out[f"{head}_logits"].float(), -1)
    if model.cfg.posterior_weight > 0:
        unit = F.normalize(out["fingerprint"].float(), dim=-1)
        res["fingerprint"] = torch.cat([unit, model.cfg.posterior_weight * res["fine_probs"]], dim=-1)
    res["z"] = out["z"]
    return res


def run_torch(model: RTFModel, batch: Batch) -> dict[str, np.ndarray]:
    """The inference outputs of one batch from the PyTorch model, as float32 arrays."""
    return {k: v.float().numpy() for k, v in inference_outputs(model, batch).items()}
