"""What the routes need, built by `create_app` and started by its lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from inference_module.api.body import BodyBudget, BodyLimits
from inference_module.dispatch import Dispatcher
from inference_module.failing import FailureStreak
from inference_module.imaging import ImageLimits
from inference_module.metrics import Metrics
from inference_module.service import ModelService
from inference_module.settings import InferenceSettings
from inference_module.slot import ModelSlot


@dataclass(frozen=True)
class AppState:
    settings: InferenceSettings
    slot: ModelSlot
    metrics: Metrics
    service: ModelService
    dispatcher: Dispatcher
    limits: ImageLimits
    body_limits: BodyLimits
    body_budget: BodyBudget
    failures: FailureStreak
