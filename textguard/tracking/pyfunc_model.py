"""The MLflow "models from code" entry point of a logged textguard model.

`mlflow.pyfunc.load_model("models:/textguard@champion")` (and `mlflow.pyfunc.spark_udf`, which loads it
once per Spark executor process) executes this file. `predict` decides through the one decision path,
`textguard.moderation.Moderator`, at the model's own thresholds, with the same `Scorer` the service and
batch scoring use, so a pyfunc prediction equals a `textguard score` one.
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
    """Input: a DataFrame with a `text` column. Output: one probability column per label, `labels` (the
    labels at or above the model's thresholds) and `action` (allow or review at those thresholds)."""

    def load_context(self, context: PythonModelContext) -> None:
        from textguard.moderation import Moderator, ServedModel
        from textguard.policy import Policy
        from textguard.scorer import Scorer

        self.scorer = Scorer.from_artifact(context.artifacts[ARTIFACT_KEY])
        self.served = ServedModel.local(self.scorer)
        self.moderator = Moderator(Policy.from_model_thresholds())

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            column = TEXT_COLUMN if TEXT_COLUMN in model_input.columns else model_input.columns[0]
            texts = [str(text) for text in model_input[column]]
        else:
            texts = [str(text) for text in model_input]
        from textguard.moderation import Item

        items = [Item(str(index), text) for index, text in enumerate(texts)]
        decisions = self.moderator.decide(items, self.served).decisions
        labels = list(self.scorer.spec.labels)
        frame = pd.DataFrame(
            [[decision.scores[label] for label in labels] for decision in decisions],
            columns=labels,
            dtype="float64",
        )
        frame["labels"] = [list(decision.labels) for decision in decisions]
        frame["action"] = [decision.action for decision in decisions]
        return frame


mlflow.models.set_model(TextguardPyfunc())
