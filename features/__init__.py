"""Point-in-time lead features: a declarative spec and one pure implementation for training and serving."""

from features.build import (
    LeadRecord,
    TouchRecord,
    build_features,
    build_features_at,
    build_features_from_records,
)
from features.spec import DEFAULT_TOUCH_TYPES, FeatureInfo, FeatureSpec, infer_spec

__all__ = [
    "DEFAULT_TOUCH_TYPES",
    "FeatureInfo",
    "FeatureSpec",
    "LeadRecord",
    "TouchRecord",
    "build_features",
    "build_features_at",
    "build_features_from_records",
    "infer_spec",
]
