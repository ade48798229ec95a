"""``python -m encoder.export CHECKPOINT [--out FILE]``: write a checkpoint's serving export
(:mod:`encoder.serving`) beside it, so that a service serves it with ONNX Runtime alone, without
PyTorch. Needs PyTorch itself (``pip install 'rtf[train]'``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from encoder.serving import beside


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m encoder.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="an RTF checkpoint (.pt)")
    parser.add_argument("--out", type=Path, help="where to write it (default: beside the checkpoint, .onnx.zip)")
    args = parser.parse_args(argv)

    from encoder.checkpoint import load_checkpoint
    from encoder.inference import Encoder

    t0 = time.perf_counter()
    encoder = Encoder(load_checkpoint(args.checkpoint))
    out = encoder.write_serving_export(args.out or beside(args.checkpoint))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, model {encoder.version}) in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
