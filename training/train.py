"""``rtf-train``: the command line (its settings: training.config) in front of the training
run (training.loop). PyTorch is imported only after the command line parsed, so ``--help``
and argument errors answer at once.
"""

from __future__ import annotations

from pathlib import Path

from training.config import TrainConfig, parse


def train(tc: TrainConfig) -> Path:
    """Train one run (training.loop.train) and return its folder."""
    from training.loop import train as run

    return run(tc)


def main(argv: list[str] | None = None) -> None:
    for tc in parse(argv):
        train(tc)


__all__ = ["TrainConfig", "main", "train"]

if __name__ == "__main__":
    main()
