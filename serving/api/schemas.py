"""The API's request and response bodies (pydantic), and the constraints on their
fields: what /docs.json shows and what BentoML validates (HTTP 400 naming the
field). The endpoints are in serving.api.service."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from serving.reasons import Reason

MAX_RECORDS = 10_000
CustomerId = Annotated[str, Field(min_length=1, max_length=256)]
# a number (NaN and +-Infinity, accepted as JSON extensions, count as missing),
# a category, or null for missing
FeatureValue = float | Annotated[str, Field(max_length=256)] | None
# the targets, spelled out so /docs.json lists them (features.columns.TARGETS);
# the service answers only those the config lists (a 400 for the others)
Target = Literal["churn", "purchase", "service_request"]


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


class ByIdPrediction(BaseModel):
    customer_id: str
    # not_found: the online store has no row for this id (not eligible at its
    # as-of date, or unknown); probabilities and as_of are then null
    status: Literal["ok", "not_found"]
    # the date the customer's features were computed at (events before it), or,
    # once an ingested event refreshed them, that newest event's time
    as_of: str | None
    # the served targets whose population held the customer at as_of
    probabilities: dict[str, float] | None
    model_versions: dict[str, str]
    # served targets whose population did not hold the customer at as_of (e.g.
    # churn for a customer already churned): no probability for them
    not_in_population: list[str] = Field(default_factory=list)


class PredictByIdResponse(BaseModel):
    predictions: list[ByIdPrediction]
    feature_set_version: str
    found: int
    not_found: int


class ReasonOut(BaseModel):
    feature: str
    # the customer's value: a number, a category, null when missing
    value: FeatureValue
    # the feature's push on the raw (log-odds) score; always > 0
    contribution: float
    phrase: str

    @classmethod
    def of(cls, r: Reason) -> ReasonOut:
        return cls(
            feature=r.feature,
            value=r.value,
            contribution=r.contribution,
            phrase=r.phrase,
        )


class Explanation(BaseModel):
    customer_id: str | None
    probability: float
    # at most k, largest contribution first; fewer when fewer features raise it
    reasons: list[ReasonOut]


class ExplainResponse(BaseModel):
    target: str
    model_version: str
    feature_set_version: str
    explanations: list[Explanation]


class OutreachCustomer(BaseModel):
    customer_id: Annotated[str, Field(min_length=1, max_length=256)]
    features: dict[Annotated[str, Field(max_length=128)], FeatureValue]
    # what a conversion is worth; default outreach.default_value
    value: Annotated[float | None, Field(ge=0, allow_inf_nan=False)] = None
    # false: never selected (opted out); null: unknown, excluded only when
    # outreach.require_consent is on
    consent: bool | None = None


class OutreachRow(BaseModel):
    customer_id: str
    probability: float
    # uplift x value - cost when ranked by uplift, else p x value - cost
    expected_value: float
    # the uplift champion's change in the wanted direction per contact
    # (p_treated - p_control; its negative for churn); null: ranked by probability
    uplift: float | None = None
    rank: int
    # treatment: contact; control: held out, do not contact
    group: Literal["treatment", "control"]
    reasons: list[ReasonOut]


class OutreachExcluded(BaseModel):
    """Customers excluded before ranking, each under its first reason."""

    opted_out: int
    no_consent: int
    forgotten: int
    frequency_cap: int


class OutreachCounts(BaseModel):
    # customers ranked: those sent minus the excluded
    eligible: int
    selected: int
    held_out: int
    dropped_non_positive: int
    excluded: OutreachExcluded


class OutreachResponse(BaseModel):
    campaign_id: str
    target: str
    # dry_run: nothing written; confirm: the selection is in the contact log
    mode: Literal["dry_run", "confirm"]
    # when the confirm was logged (UTC); null for a dry run
    confirmed_at: str | None
    model_version: str
    # uplift: by expected incremental value (the target has an uplift champion);
    # probability: by p x value - cost
    ranking: Literal["uplift", "probability"] = "probability"
    # the uplift champion's version when ranked by uplift
    uplift_model_version: str | None = None
    selected: list[OutreachRow]
    counts: OutreachCounts
    reasons: list[str]


class FeatureInfo(BaseModel):
    name: str
    # from the feature catalogue; null for attributes it cannot describe here
    description: str | None
    categorical: bool


class ModelInfo(BaseModel):
    name: str
    version: str
    aliases: list[str]
    trained_at: str | None
    feature_set_version: str | None
    calibration: str | None
    horizon_days: int | None
    # the customers the model is trained and scored on (FeatureSpec.population_name:
    # active_not_churned, seen, seen_within_<N>d); null for older models
    population: str | None = None
    # the champion's backtest metric means over the origins (roc_auc, log_loss, ...)
    backtest_means: dict[str, float]
    features: list[FeatureInfo]


class ForgetResponse(BaseModel):
    forgotten: int
    rows_removed: int
    # rows removed per place (a file or table); the customers are on the
    # suppression list whether or not any row was found
    places: dict[str, int]


class MetadataResponse(BaseModel):
    models: dict[str, ModelInfo]
    feature_set_version: str


class IngestResponse(BaseModel):
    """What `POST /events` did with a batch (serving.ingest)."""

    received: int
    # new in the event log and applied to the online store
    accepted: int
    # event ids the log held already (or repeated in the batch): applied once
    duplicates: int
    # events of forgotten customers (the suppression list): dropped
    suppressed: int
    # customers whose predict_by_id rows now include the batch
    customers: int
    # the newest event time those rows include
    as_of: str | None
