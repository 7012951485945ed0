"""Every request and response body of the API, in one module."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, StrictBool, StrictInt, StrictStr

Timestamp = Annotated[datetime, Field(description="ISO 8601; naive means UTC.")]
AttributeValue = StrictBool | StrictInt | FiniteFloat | StrictStr | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TouchIn(_Strict):
    occurred_at: Timestamp
    touch_type: Annotated[str, Field(min_length=1, max_length=100)]
    channel: Annotated[str, Field(max_length=100)] | None = None
    campaign: Annotated[str, Field(max_length=200)] | None = None
    value: FiniteFloat | None = None


class LeadIn(_Strict):
    lead_id: Annotated[str, Field(min_length=1, max_length=200)]
    created_at: Timestamp
    attributes: dict[Annotated[str, Field(max_length=200)], AttributeValue] = Field(default_factory=dict)
    touchpoints: Annotated[list[TouchIn], Field(max_length=10_000)] = Field(default_factory=list)
    as_of: Timestamp | None = Field(
        None, description="Score as of this time (default: now). Later touches are ignored."
    )


class BatchIn(_Strict):
    leads: list[LeadIn]
    explain: bool = Field(True, description="Compute fit, engagement and reasons (costs far more than the score).")


class ReasonOut(BaseModel):
    feature: str
    description: str
    impact: float = Field(description="Contribution to the log-odds of converting (positive raises the score).")


class ScoreOut(BaseModel):
    lead_id: str
    probability: float
    score: int = Field(ge=0, le=100)
    grade: Literal["A", "B", "C", "D"]
    qualified: bool
    fit: int | None = Field(None, description="0-100: the score from who the lead is (attributes) alone.")
    engagement: int | None = Field(None, description="0-100: the score from what the lead does (touches) alone.")
    trend: Literal["rising", "steady", "falling"]
    reasons: list[ReasonOut]
    model_version: str
    threshold_version: int


class BatchOut(BaseModel):
    results: list[ScoreOut]


class ModelOut(BaseModel):
    name: str
    version: str
    run_id: str | None
    trained_at: str | None
    horizon_days: int | None
    split: str | None
    windows: dict[str, str]
    data_fingerprint: dict[str, object]
    metrics: dict[str, float]
    features: int
    loaded_at: datetime


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    ready: bool
    model_version: str | None
    model_loaded_at: datetime | None
    last_check_at: datetime | None
    last_error: str | None


class ReloadOut(BaseModel):
    changed: bool
    model_version: str | None
    error: str | None


class ErrorOut(BaseModel):
    detail: str | list[dict[str, object]]
