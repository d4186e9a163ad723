"""The MLflow "models from code" entry point of a logged textguard model.

`mlflow.pyfunc.load_model("models:/textguard@champion")` executes this file, which wraps the same
`Scorer` the service and batch scoring use, so a pyfunc prediction equals a `textguard score` one.
The weights stay safetensors + textguard.json under the model's `artifacts/textguard/`: nothing is
pickled, and textguard's own loader reads that directory without MLflow's pyfunc machinery.

This file is logged as code, not imported: MLflow's contract is that it calls `set_model` when
executed, which is why it is the one module here that creates an object at import time. Nothing in
textguard imports it.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

#: Key of the artefact directory in `context.artifacts` (also its folder name under artifacts/).
ARTIFACT_KEY = "textguard"
TEXT_COLUMN = "text"


class TextguardPyfunc(PythonModel):
    """Input: a DataFrame with a `text` column. Output: one probability column per label + `labels`."""

    def load_context(self, context: PythonModelContext) -> None:
        from textguard.scorer import Scorer

        self.scorer = Scorer.from_artifact(context.artifacts[ARTIFACT_KEY])

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            column = TEXT_COLUMN if TEXT_COLUMN in model_input.columns else model_input.columns[0]
            texts = [str(text) for text in model_input[column]]
        else:
            texts = [str(text) for text in model_input]
        predictions = self.scorer.score(texts)
        frame = pd.DataFrame(
            [prediction.scores for prediction in predictions], columns=list(self.scorer.spec.labels)
        )
        frame["labels"] = [prediction.labels for prediction in predictions]
        return frame


mlflow.models.set_model(TextguardPyfunc())
