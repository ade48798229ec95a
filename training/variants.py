"""A checkpoint that is another model version of the same network: for trying version switches
(``rtf-reencode``, ``POST /v1/models/{version}/activate``) without training a second model.

    python -m training.variants OUT.pt [--from CHECKPOINT] [--scale 0.01] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from encoder.checkpoint import load_checkpoint, save_checkpoint


def jittered_checkpoint(out: str | Path, source: str | Path | None = None, *, scale: float = 0.01, seed: int = 0) -> str:
    """Write ``source`` (default: the bundled checkpoint) with every weight multiplied by
    ``1 + scale * N(0, 1)``: close fingerprints, a different version. Returns the version."""
    ckpt = load_checkpoint(source)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ckpt.model.state_dict().values():
            if p.is_floating_point():
                p.mul_(1 + scale * torch.randn(p.shape, generator=gen))
    summary = dict(ckpt.summary) | {"jittered_from": ckpt.version, "jitter_scale": scale, "jitter_seed": seed}
    return save_checkpoint(out, ckpt.model, ckpt.spec, ckpt.scorer, summary=summary, metrics=ckpt.metrics)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--from", dest="source", type=Path, help="default: the bundled checkpoint")
    p.add_argument("--scale", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(jittered_checkpoint(a.out, a.source, scale=a.scale, seed=a.seed))


if __name__ == "__main__":
    main()
