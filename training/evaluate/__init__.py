"""Evaluation CLIs (``rtf-evaluate``): early classification, linear probe, reconstruction,
kNN retrieval, anomaly ranking and embeddings, each beside a physics-feature baseline."""

from training.evaluate.cli import main

__all__ = ["main"]
