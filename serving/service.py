"""The BentoML service: the three champions behind `predict`.

`bentoml serve serving.service:Propensity` (or `propensity serve`) starts it. The
champions are loaded once at start-up from the MLflow registry named by
MLFLOW_TRACKING_URI or the project config (PROPENSITY_CONFIG, default
./propensity.yaml); start-up fails, saying to train first, when one is missing.
"""

from __future__ import annotations

import logging
from typing import Annotated

import bentoml
from pydantic import BaseModel, Field

from features.config import config_path, load_config
from serving.predictor import Champions, RecordError
from training.registry import configure

log = logging.getLogger(__name__)

MAX_RECORDS = 10_000
FeatureValue = float | str | None


class CustomerFeatures(BaseModel):
    customer_id: Annotated[str | None, Field(max_length=256)] = None
    features: dict[Annotated[str, Field(max_length=128)], FeatureValue]


class Prediction(BaseModel):
    customer_id: str | None
    probabilities: dict[str, float]
    model_versions: dict[str, str]


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    feature_set_version: str


@bentoml.service(name="propensity", traffic={"timeout": 60})
class Propensity:
    def __init__(self) -> None:
        path = config_path()
        config = load_config(path)
        uri = config.tracking_uri(path.resolve().parent)
        configure(uri)
        self.champions = Champions.load(config, uri)
        log.info("loaded champions %s from %s", self.champions.versions, uri)

    @bentoml.api
    def predict(
        self,
        customers: Annotated[
            list[CustomerFeatures], Field(min_length=1, max_length=MAX_RECORDS)
        ],
    ) -> PredictResponse:
        """Churn, purchase and service-request probabilities for feature records."""
        records = [c.features for c in customers]
        try:
            self.champions.check_records(records, "customers")
        except RecordError as exc:
            raise bentoml.exceptions.InvalidArgument(str(exc)) from exc
        probs = self.champions.predict_records(records)
        versions = self.champions.versions
        predictions = [
            Prediction(
                customer_id=c.customer_id,
                probabilities={t: float(p[i]) for t, p in probs.items()},
                model_versions=versions,
            )
            for i, c in enumerate(customers)
        ]
        return PredictResponse(
            predictions=predictions,
            feature_set_version=self.champions.feature_set_version,
        )
