"""The BentoML service: the three champions behind `predict`, `explain`,
`outreach` and `metadata`.

`bentoml serve serving.api.service:Propensity` (or `propensity serve`) starts it. The
champions are loaded once at start-up from the MLflow registry named by
MLFLOW_TRACKING_URI or the project config (PROPENSITY_CONFIG, default
./propensity.yaml); start-up fails, saying to train first, when one is missing.
Served from a Bento (or with PROPENSITY_MODELS=bentoml, see serving/bento.py)
they come from the models packed into it instead.
Every endpoint but the health probes, /metrics and the docs needs an API key
(serving/auth.py); a worker started with no key configured fails, saying how to
create one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Literal

import bentoml
import numpy as np
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, RedirectResponse

from core.atomic import Busy
from core.config import ConfigError, config_path, load_config
from core.config.secrets import outreach_key
from features.definition import FeatureSpec, catalogue
from features.sources.privacy import pseudonymiser, suppression_path
from model.registry import CHAMPION, configure
from serving.api import bento
from serving.api.auth import (
    ASGIApp,
    BearerAuth,
    Receive,
    Scope,
    Send,
    keyring_from_config,
)
from serving.api.body_limit import BodyLimit
from serving.online_store import sqlite as online_store
from serving.outreach import contact_policy as policy
from serving.outreach import selection as outreach
from serving.outreach.contact_log import AlreadyConfirmed, ContactLog, ContactLogError
from serving.privacy import forget
from serving.reasons import Reason, reasons
from serving.scoring import Champions, RecordError

log = logging.getLogger(__name__)

MAX_RECORDS = 10_000
CustomerId = Annotated[str, Field(min_length=1, max_length=256)]
# a number (NaN and +-Infinity, accepted as JSON extensions, count as missing),
# a category, or null for missing
FeatureValue = float | Annotated[str, Field(max_length=256)] | None
# the targets, spelled out so /docs.json lists them (features.columns.TARGETS)
Target = Literal["churn", "purchase", "service_request"]
# the champion's backtest means in the registered metadata: backtest_<metric>_mean
BACKTEST_PREFIX, MEAN_SUFFIX = "backtest_", "_mean"


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
    # the date the customer's features were computed at (events before it)
    as_of: str | None
    probabilities: dict[str, float] | None
    model_versions: dict[str, str]


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
    expected_value: float
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


def _reason(r: Reason) -> ReasonOut:
    return ReasonOut(
        feature=r.feature, value=r.value, contribution=r.contribution, phrase=r.phrase
    )


# Per endpoint and target, beside BentoML's own request counters and latencies
# (bentoml.metrics builds them lazily, in each worker's multiprocess registry).
SCORED = bentoml.metrics.Counter(
    name="propensity_scored_customers",
    documentation="customers scored, per endpoint and target",
    labelnames=["endpoint", "target"],
)
LOOKUPS = bentoml.metrics.Counter(
    name="propensity_online_store_lookups",
    documentation="predict_by_id ids looked up in the online store, per status",
    labelnames=["status"],
)


def _count(endpoint: str, targets: Iterable[str], n: int) -> None:
    for target in targets:
        SCORED.labels(endpoint=endpoint, target=target).inc(n)


def _bad_request(message: str) -> JSONResponse:
    """A 400 shaped like BentoML's own validation errors ({"error": ...});
    its InvalidArgument would wrap the object in a list."""
    return JSONResponse({"error": message}, status_code=400)


def _conflict(exc: AlreadyConfirmed) -> JSONResponse:
    return JSONResponse(
        {
            "error": str(exc),
            "campaign_id": exc.campaign_id,
            "confirmed_at": exc.confirmed_at,
        },
        status_code=409,
    )


def _unavailable(what: str, exc: Exception) -> JSONResponse:
    """A 503 whose message says how to fix it: BentoML replaces the message of
    any 5xx it raises itself by "unexpected error"."""
    log.error("%s refused: %s", what, exc)
    return JSONResponse({"error": f"{what} is not available: {exc}"}, status_code=503)


@bentoml.service(name="propensity", traffic={"timeout": 60})
class Propensity:
    def __init__(self) -> None:
        path = config_path()
        config = load_config(path)
        # no API key: fail start-up, saying how to make one (the middleware is only
        # built at the first request, which would then fail with a 500)
        keyring_from_config(config.api)
        # served from a Bento (BentoML sets .bento): the champions packed in it
        if Propensity.bento is not None or bento.from_bento_store():
            uri = "the BentoML model store"
            self.champions = Champions(bento.load_packed(config))
        else:
            uri = config.tracking_uri(path.resolve().parent)
            configure(uri)
            self.champions = Champions.load(config, uri)
        self.config = config
        self.pseudonyms = pseudonymiser(config.privacy)
        self.opt_outs = policy.WatchedIds()
        self.forgotten = policy.WatchedIds("the suppression list", missing_ok=True)
        self.store = online_store.open_reader(
            config.online_store, required=self.champions.feature_names
        )
        # event features only: the customers table (attributes) may not exist here
        self.descriptions = {
            f.name: f.description
            for f in catalogue(FeatureSpec.from_config(config)).features
        }
        log.info("loaded champions %s from %s", self.champions.versions, uri)

    def _rejected(self, records: list[dict]) -> JSONResponse | None:
        """A 400 naming the first bad field of the records, or None."""
        try:
            self.champions.check_records(records, "customers")
        except RecordError as exc:
            return _bad_request(str(exc))
        return None

    @bentoml.api
    def predict(
        self,
        customers: Annotated[
            list[CustomerFeatures], Field(min_length=1, max_length=MAX_RECORDS)
        ],
    ) -> PredictResponse:
        """Churn, purchase and service-request probabilities for feature records."""
        records = [c.features for c in customers]
        if (rejected := self._rejected(records)) is not None:
            return rejected  # type: ignore[return-value]
        probs = self.champions.predict_records(records)
        versions = self.champions.versions
        _count("predict", probs, len(records))
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

    @bentoml.api
    def predict_by_id(
        self,
        customer_ids: Annotated[
            list[CustomerId], Field(min_length=1, max_length=MAX_RECORDS)
        ],
    ) -> PredictByIdResponse:
        """Probabilities for customer ids, from the features the nightly job
        stored for each (its as-of date is returned); an id the store lacks is
        `not_found`. With pseudonymisation on, the store is keyed by pseudonym:
        each id is hashed first and answered as sent."""
        stored = self.pseudonyms.many(customer_ids)
        try:
            found = self.store.lookup(stored)
        except online_store.StoreError as exc:
            return _unavailable("predict_by_id", exc)  # type: ignore[return-value]
        hits = [i for i, c in enumerate(stored) if c in found]
        probs = self.champions.predict_records([found[stored[i]].record for i in hits])
        versions = self.champions.versions
        predictions = [
            ByIdPrediction(
                customer_id=c,
                status="not_found",
                as_of=None,
                probabilities=None,
                model_versions=versions,
            )
            for c in customer_ids
        ]
        for row, i in enumerate(hits):
            item = predictions[i]
            item.status = "ok"
            item.as_of = found[stored[i]].as_of
            item.probabilities = {t: float(p[row]) for t, p in probs.items()}
        _count("predict_by_id", probs, len(hits))
        LOOKUPS.labels(status="ok").inc(len(hits))
        LOOKUPS.labels(status="not_found").inc(len(customer_ids) - len(hits))
        return PredictByIdResponse(
            predictions=predictions,
            feature_set_version=self.champions.feature_set_version,
            found=len(hits),
            not_found=len(customer_ids) - len(hits),
        )

    @bentoml.api
    def explain(
        self,
        customers: Annotated[
            list[CustomerFeatures], Field(min_length=1, max_length=MAX_RECORDS)
        ],
        target: Target,
        k: Annotated[int | None, Field(ge=1, le=20)] = None,
    ) -> ExplainResponse:
        """One target's probability and its top-k reasons per customer: the
        features that raised the score most (non-actionable ones left out)."""
        records = [c.features for c in customers]
        if (rejected := self._rejected(records)) is not None:
            return rejected  # type: ignore[return-value]
        explain = self.config.explain
        model = self.champions.models[target]
        matrix = self.champions.matrix(records, target)
        probs = model.predict(matrix)
        _count("explain", [target], len(records))
        found = reasons(
            model,
            matrix,
            explain.top_k if k is None else k,
            frozenset(explain.non_actionable),
            self.descriptions,
            explain.method,
        )
        return ExplainResponse(
            target=target,
            model_version=model.version,
            feature_set_version=str(model.metadata.get("feature_set_version", "")),
            explanations=[
                Explanation(
                    customer_id=c.customer_id,
                    probability=float(p),
                    reasons=[_reason(r) for r in rs],
                )
                for c, p, rs in zip(customers, probs, found, strict=True)
            ],
        )

    @bentoml.api
    def outreach(
        self,
        campaign_id: Annotated[
            str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
        ],
        target: Target,
        customers: Annotated[
            list[OutreachCustomer], Field(min_length=1, max_length=MAX_RECORDS)
        ],
        budget: Annotated[int | None, Field(ge=1)] = None,
        threshold: Annotated[float | None, Field(ge=0, le=1)] = None,
        contact_cost: Annotated[float | None, Field(ge=0, allow_inf_nan=False)] = None,
        control_share: Annotated[
            float | None, Field(ge=0, le=outreach.MAX_CONTROL_SHARE)
        ] = None,
        mode: Literal["dry_run", "confirm"] = "dry_run",
    ) -> OutreachResponse:
        """Whom to contact for a campaign: customers ranked by expected value
        (p * value - contact_cost), picked by `budget` (top n) or `threshold`
        (p >= t; give exactly one), with a keyed-hash control group held out.
        The contact policy first excludes the opted out, those without a required
        consent, the forgotten and those over the frequency cap. `dry_run` writes
        nothing; `confirm` logs the selection for the cap (409 if the campaign
        was confirmed before)."""
        if (budget is None) == (threshold is None):
            return _bad_request("budget, threshold: give exactly one")  # type: ignore[return-value]
        settings = self.config.outreach
        try:
            key = outreach_key(settings).get_secret_value()
            opted_out = self.opt_outs.ids(settings.opt_out_file)
            forgotten = self.forgotten.ids(suppression_path(self.config.privacy))
        except (ConfigError, policy.OptOutFileError) as exc:
            return _unavailable("outreach", exc)  # type: ignore[return-value]
        records = [c.features for c in customers]
        if (rejected := self._rejected(records)) is not None:
            return rejected  # type: ignore[return-value]
        ids = [c.customer_id for c in customers]
        if len(set(ids)) != len(ids):
            return _bad_request("customer_ids: duplicates")  # type: ignore[return-value]
        stored = self.pseudonyms.many(ids)
        cap = settings.frequency_cap
        excluding = partial(
            policy.exclusions,
            ids,
            stored,
            [c.consent for c in customers],
            opted_out=opted_out,
            forgotten=forgotten,
            require_consent=settings.require_consent,
            max_contacts=None if cap is None else cap.max_contacts,
        )
        choose = partial(
            self._choose,
            campaign_id,
            customers,
            target,
            key=key,
            budget=budget,
            threshold=threshold,
            contact_cost=settings.contact_cost
            if contact_cost is None
            else contact_cost,
            control_share=settings.control_share
            if control_share is None
            else control_share,
        )
        log = ContactLog(settings.contact_log)
        confirmed_at = None
        try:
            if mode == "dry_run":
                now = datetime.now(UTC)
                recent = log.recent(stored, cap.per_days, now) if cap else {}
                excluded = excluding(contacts=recent)
                selection, kept, matrix = choose(excluded)
            else:
                with log.confirming(campaign_id) as tx:
                    recent = tx.recent(stored, cap.per_days) if cap else {}
                    excluded = excluding(contacts=recent)
                    selection, kept, matrix = choose(excluded)
                    stored_of = dict(zip(ids, stored, strict=True))
                    tx.record(
                        target,
                        [(stored_of[r.customer_id], r.group) for r in selection.rows],
                    )
                    confirmed_at = tx.confirmed_at
        except AlreadyConfirmed as exc:
            return _conflict(exc)  # type: ignore[return-value]
        except ContactLogError as exc:
            return _unavailable("outreach", exc)  # type: ignore[return-value]
        except ValueError as exc:
            return _bad_request(str(exc))  # type: ignore[return-value]
        counts = policy.counted(excluded)
        notes = policy.notes(
            counts,
            None if cap is None else cap.max_contacts,
            None if cap is None else cap.per_days,
        )
        return self._outreach_response(
            selection, kept, matrix, target, mode, confirmed_at, counts, notes
        )

    def _choose(
        self,
        campaign_id: str,
        customers: list[OutreachCustomer],
        target: str,
        excluded: Sequence[str | None],
        **rules: object,
    ) -> tuple[outreach.Selection, list[OutreachCustomer], np.ndarray]:
        """Score the customers not excluded and select among them; with the
        features of the scored. ValueError from selection names its field."""
        kept = [c for c, why in zip(customers, excluded, strict=True) if why is None]
        model = self.champions.models[target]
        if kept:
            matrix = self.champions.matrix([c.features for c in kept], target)
            probabilities = model.predict(matrix)
        else:
            matrix, probabilities = np.empty((0, 0)), np.empty(0)
        default = self.config.outreach.default_value
        selection = outreach.select(
            campaign_id,
            [c.customer_id for c in kept],
            probabilities,
            values=[default if c.value is None else c.value for c in kept],
            **rules,  # type: ignore[arg-type]
        )
        _count("outreach", [target], len(kept))
        return selection, kept, matrix

    def _outreach_response(
        self,
        selection: outreach.Selection,
        kept: list[OutreachCustomer],
        matrix: np.ndarray,
        target: str,
        mode: Literal["dry_run", "confirm"],
        confirmed_at: str | None,
        excluded: dict[str, int],
        notes: list[str],
    ) -> OutreachResponse:
        model = self.champions.models[target]
        # reason codes only for the selected: attribution is the costly part
        row_of = {c.customer_id: i for i, c in enumerate(kept)}
        explain = self.config.explain
        found = (
            reasons(
                model,
                matrix[[row_of[r.customer_id] for r in selection.rows]],
                explain.top_k,
                frozenset(explain.non_actionable),
                self.descriptions,
                explain.method,
            )
            if selection.rows
            else []
        )
        return OutreachResponse(
            campaign_id=selection.campaign_id,
            target=target,
            mode=mode,
            confirmed_at=confirmed_at,
            model_version=model.version,
            selected=[
                OutreachRow(
                    customer_id=r.customer_id,
                    probability=r.probability,
                    expected_value=r.expected_value,
                    rank=r.rank,
                    group=r.group,
                    reasons=[_reason(x) for x in rs],
                )
                for r, rs in zip(selection.rows, found, strict=True)
            ],
            counts=OutreachCounts(
                eligible=selection.eligible,
                selected=selection.selected,
                held_out=selection.held_out,
                dropped_non_positive=selection.dropped_non_positive,
                excluded=OutreachExcluded(**excluded),
            ),
            reasons=notes + selection.reasons,
        )

    @bentoml.api
    def forget(
        self,
        customer_ids: Annotated[
            list[CustomerId], Field(min_length=1, max_length=MAX_RECORDS)
        ],
    ) -> ForgetResponse:
        """Forget customers, as `propensity forget` does: off the online store,
        the score outputs and the training snapshots, onto the suppression list
        every later run honours, into the erasure log (admin scope)."""
        try:
            erasure = forget.forget(self.config, customer_ids)
        except Busy as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)  # type: ignore[return-value]
        return ForgetResponse(
            forgotten=len(erasure.customers),
            rows_removed=erasure.rows(),
            places={p: sum(ids.values()) for p, ids in erasure.removed.items()},
        )

    @bentoml.api(route="/metadata")
    def metadata(self) -> MetadataResponse:
        """The champions served: versions, training, calibration, backtest means
        and features with their descriptions."""
        models = {}
        for target, model in self.champions.models.items():
            meta = model.metadata
            calibration = meta.get("calibration")
            if isinstance(calibration, dict):
                calibration = calibration.get("method")
            vocab = model.encoding.vocabularies
            models[target] = ModelInfo(
                name=model.name,
                version=model.version,
                aliases=[CHAMPION],
                trained_at=meta.get("trained_at"),
                feature_set_version=meta.get("feature_set_version"),
                calibration=calibration,
                horizon_days=meta.get("horizon_days"),
                backtest_means={
                    k.removeprefix(BACKTEST_PREFIX).removesuffix(MEAN_SUFFIX): float(v)
                    for k, v in (meta.get("metrics") or {}).items()
                    if k.startswith(BACKTEST_PREFIX) and k.endswith(MEAN_SUFFIX)
                },
                features=[
                    FeatureInfo(
                        name=f,
                        description=self.descriptions.get(f),
                        categorical=f in vocab,
                    )
                    for f in model.encoding.features
                ],
            )
        return MetadataResponse(
            models=models, feature_set_version=self.champions.feature_set_version
        )


class ApiGuard:
    """API keys, then the request size limit. BentoML builds its middleware in
    each worker: the config and the keys are read there, not when this module is
    imported."""

    def __init__(self, app: ASGIApp) -> None:
        api = load_config(config_path()).api
        keyring = keyring_from_config(api)
        limited = BodyLimit(app, int(api.max_request_mb * 1_000_000))
        self.app = limited if keyring is None else BearerAuth(limited, keyring)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def _docs(scope: Scope, receive: Receive, send: Send) -> None:
    """/docs: the Swagger page BentoML serves at /, its spec at /docs.json."""
    await RedirectResponse("/")(scope, receive, send)


Propensity.add_asgi_middleware(ApiGuard)
Propensity.mount_asgi_app(_docs, path="/docs")
