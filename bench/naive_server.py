"""The baseline for bench/serve_load.py: the server most tutorials write.

FastAPI + a transformers `pipeline`, one forward pass per request, run in FastAPI's thread pool
(a plain `def` endpoint), so concurrent requests run concurrent pipelines on the same cores.
Same request and response shape as textguard's /v1/score (scores only), same model directory.

    python bench/naive_server.py --model PATH --port 8001
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


class Message(BaseModel):
    id: str
    text: str


class ScoreRequest(BaseModel):
    messages: list[Message]


def build_app(model: str) -> FastAPI:
    from transformers import pipeline

    classifier = pipeline("text-classification", model=model, top_k=None, function_to_apply="sigmoid")
    app = FastAPI()

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/score")
    def score(request: ScoreRequest) -> dict[str, Any]:
        # top_k=None: one list of {label, score} per input text.
        outputs: Any = classifier([message.text for message in request.messages], truncation=True)
        return {
            "results": [
                {"id": message.id, "scores": {str(item["label"]): float(item["score"]) for item in output}}
                for message, output in zip(request.messages, outputs, strict=True)
            ]
        }

    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()

    import uvicorn

    uvicorn.run(build_app(args.model), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
