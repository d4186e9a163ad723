"""`Annotated` dependency aliases for route signatures: `service: Scoring`, `caller: ScoreCaller`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from textguard.service.model_manager import ModelManager
from textguard.service.scoring import ScoringService
from textguard.service.security import Caller, ReportCaller, ScoreCaller


# async: FastAPI runs a plain `def` dependency in its thread pool, one thread hop per request for an
# attribute lookup (and a slot taken from the pool the audit commits run in).
async def _scoring(request: Request) -> ScoringService:
    service: ScoringService = request.app.state.scoring
    return service


async def _models(request: Request) -> ModelManager:
    manager: ModelManager = request.app.state.model_manager
    return manager


Scoring = Annotated[ScoringService, Depends(_scoring)]
Models = Annotated[ModelManager, Depends(_models)]

__all__ = ["Caller", "Models", "ReportCaller", "ScoreCaller", "Scoring"]
