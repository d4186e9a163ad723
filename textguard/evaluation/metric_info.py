"""The `evaluate.MetricInfo` shared by the project's multi-label metric modules.

Each metric module must stand alone as a file `evaluate.load` can read by path, but the input
schema (one row per text: a vector over labels for predictions and references) is one decision.
"""

from __future__ import annotations

from typing import Literal

import datasets
import evaluate


def multilabel_metric_info(
    description: str, inputs_description: str, predictions: Literal["float64", "int8"]
) -> evaluate.MetricInfo:
    """Predictions are per-label probabilities (float64) or decisions (int8); references are 0/1."""
    return evaluate.MetricInfo(
        description=description,
        citation="",
        inputs_description=inputs_description,
        features=datasets.Features(
            {
                "predictions": datasets.Sequence(datasets.Value(predictions)),
                "references": datasets.Sequence(datasets.Value("int8")),
            }
        ),
    )
