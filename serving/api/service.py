"""The BentoML service: the champions of the targets the config lists (`targets:`)
behind `predict`, `explain`, `outreach` and `metadata` (a target it does not list
is not served: a 400 naming the served ones); campaign readouts behind
`campaign_report`.

`bentoml serve serving.api.service:Propensity` (or `propensity serve`) starts it. The
champions are loaded once at start-up from the MLflow registry named by
MLFLOW_TRACKING_URI or the project config (PROPENSITY_CONFIG, default
./propensity.yaml). Served from a Bento (or with PROPENSITY_MODELS=bentoml, see
serving/bento.py) they come from the models packed into it instead. When they
cannot be loaded (no champion: train first; the tracking server unreachable; an
artifact corrupted) the worker starts all the same, not ready: /readyz and every
endpoint answer 503 saying why, and it tries again in the background until they
load (serving/api/readiness.py).
The docs page (/) and spec (/docs.json) are propensity's (serving/api/docs.py).
Every endpoint but the health probes, /metrics and the docs needs an API key
(serving/api/auth.py); a worker started with no key configured fails, saying how
to create one. `ApiGuard` puts the access log (serving/api/access.py) around the
key check, the per-key rate limit (serving/api/limits.py) and the request size
limit (serving/api/body_limit.py).

The request and response bodies are in serving/api/schemas.py; the endpoints
here turn them into calls of the rooms that do the work (serving.scoring, the
online store, serving.outreach.campaign, serving.privacy.forget) and their
errors into HTTP answers (each endpoint tells the access log, serving/api/access.py,
how many records it got): 400 `{"error": ...}` naming the field, 409 for a
conflict, 503 saying what is missing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
import numpy as np
from pydantic import Field
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, RedirectResponse

from core.atomic import Busy
from core.config import ConfigError, config_path, load_config
from features.definition import FeatureSpec, catalogue
from features.sources.contract import ContractError
from features.sources.load import connect, load_project
from features.sources.privacy import pseudonymiser
from model.registry import CHAMPION, configure
from serving import online_store
from serving.api import access, bento, readiness
from serving.api.auth import (
    CONSOLE,
    ASGIApp,
    Receive,
    Scope,
    Send,
    keyring_from_config,
)
from serving.api.docs import DocsPages
from serving.api.guard import guard
from serving.api.schemas import (
    MAX_RECORDS,
    ByIdPrediction,
    CustomerFeatures,
    CustomerId,
    ExplainResponse,
    Explanation,
    FeatureInfo,
    ForgetResponse,
    IngestResponse,
    MetadataResponse,
    ModelInfo,
    OutreachCounts,
    OutreachCustomer,
    OutreachExcluded,
    OutreachResponse,
    OutreachRow,
    PredictByIdResponse,
    Prediction,
    PredictResponse,
    ReasonOut,
    Target,
)
from serving.online_store.live import LiveRows, live_path
from serving.outreach import campaign
from serving.outreach.contact_log import AlreadyConfirmed, ContactLogError
from serving.outreach.contact_policy import OptOutFileError
from serving.outreach.readout import ReadoutError, readout
from serving.outreach.selection import MAX_CONTROL_SHARE
from serving.privacy import forget
from serving.reasons import reasons
from serving.scoring import (
    Champions,
    RecordError,
    UnknownTargetError,
    load_uplift,
    uplift_matrix,
)

# predict_by_id for this many ids or fewer is answered on the event loop when the
# store is the local SQLite file: ~1 ms of lookups and predicts, cheaper than the
# hand-over to a worker thread and back (which, under POST /events load, waits
# for the interpreter lock each way)
INLINE_IDS = 32
log = logging.getLogger(__name__)

# the champion's backtest means in the registered metadata: backtest_<metric>_mean
BACKTEST_PREFIX, MEAN_SUFFIX = "backtest_", "_mean"

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
        self.config = config
        self.pseudonyms = pseudonymiser(config.privacy)
        self.contact_policy = campaign.ContactPolicy()
        # event features only: the customers table (attributes) may not exist here
        self.descriptions = {
            f.name: f.description
            for f in catalogue(FeatureSpec.from_config(config)).features
        }
        # the champions and the store need the outside world: an unreachable
        # registry or a corrupted artifact leaves the worker up and not ready,
        # trying again in the background (serving/api/readiness.py)
        self.uplift: dict = {}
        # real-time ingest (serving.ingest): the live rows over the nightly
        # store, and the ingester, made at the first POST /events
        self.live = LiveRows(live_path(config.online_store.path))
        self._ingester = None
        self._ingester_lock = threading.Lock()
        self.loader = readiness.track(
            readiness.Loader(lambda: self._load(path), config.api.load_retry_max_s)
        )
        self.loader.start()

    def _load(self, path: Path) -> None:
        """The champions (from the Bento, else the registry) and the online
        store reader; raises, saying what failed, when they cannot be loaded."""
        config = self.config
        # served from a Bento (BentoML sets .bento): the champions packed in it
        if Propensity.bento is not None or bento.from_bento_store():
            uri = "the BentoML model store"
            champions = Champions(bento.load_packed(config))
            # a Bento packs no uplift model yet: outreach ranks by probability
            uplift = {}
        else:
            uri = config.tracking_uri(path.resolve().parent)
            configure(uri)
            champions = Champions.load(config, uri)
            uplift = load_uplift(config, uri, champions.feature_names)
        self.store = online_store.open_reader(
            config.online_store, required=champions.feature_names
        )
        self.champions = champions
        self.uplift = uplift
        log.info("loaded champions %s from %s", champions.versions, uri)
        if uplift:
            log.info(
                "uplift champions %s: outreach ranks those targets by expected "
                "incremental value",
                {t: m.version for t, m in uplift.items()},
            )

    def __is_ready__(self) -> bool:
        """BentoML's /readyz: 503 with the reason as its body until the
        champions are loaded."""
        if (reason := self.loader.why_not()) is not None:
            raise HTTPException(status_code=503, detail=reason)
        return True

    def _not_served(self, target: str) -> JSONResponse | None:
        """A 400 naming the target and the served ones when `target` is not
        listed under `targets:` in the config, or None."""
        try:
            self.champions.model(target)
        except UnknownTargetError as exc:
            return _bad_request(str(exc))
        return None

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
        """Probabilities of the served targets (those the config lists: churn,
        purchase, service_request) for feature records."""
        access.note_records(len(customers))
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
    async def predict_by_id(
        self,
        customer_ids: Annotated[
            list[CustomerId], Field(min_length=1, max_length=MAX_RECORDS)
        ],
    ) -> PredictByIdResponse:
        """Probabilities for customer ids, from the features the nightly job
        stored for each (its as-of date is returned), or those real-time ingest
        refreshed since (`as_of` is then the newest event's time); an id the
        store lacks is `not_found`. A target whose population did not hold the
        customer at the as-of date (e.g. churn, for a customer already churned) has no
        probability and is listed in `not_in_population`. With pseudonymisation
        on, the store is keyed by pseudonym: each id is hashed first and answered
        as sent."""
        access.note_records(len(customer_ids))
        local = self.config.online_store.postgres is None  # no network round trip
        if len(customer_ids) <= INLINE_IDS and local:
            return self._by_id(customer_ids)
        return await asyncio.to_thread(self._by_id, customer_ids)

    def _by_id(self, customer_ids: list[str]) -> PredictByIdResponse:
        stored = self.pseudonyms.many(customer_ids)
        try:
            found = self.store.lookup(stored)
            live = self.live.lookup(self.store.meta, stored)
            found = {**found, **live} if live else found
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
            item, hit = predictions[i], found[stored[i]]
            item.status = "ok"
            item.as_of = hit.as_of
            # only the targets whose population held the customer at as_of
            item.probabilities = {
                t: float(p[row]) for t, p in probs.items() if t in hit.scored
            }
            item.not_in_population = [t for t in probs if t not in hit.scored]
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
        features that raised the score most (non-actionable ones left out). A
        target the config does not list is a 400 naming the served ones."""
        access.note_records(len(customers))
        if (refused := self._not_served(target)) is not None:
            return refused  # type: ignore[return-value]
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
                    reasons=[ReasonOut.of(r) for r in rs],
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
            float | None, Field(ge=0, le=MAX_CONTROL_SHARE)
        ] = None,
        mode: Literal["dry_run", "confirm"] = "dry_run",
    ) -> OutreachResponse:
        """Whom to contact for a campaign: customers ranked by expected value
        (p * value - contact_cost), or, when the target has an uplift champion,
        by expected incremental value (uplift * value - contact_cost; `ranking`
        says which), picked by `budget` (top n) or `threshold`
        (p >= t; give exactly one), with a keyed-hash control group held out.
        The contact policy first excludes the opted out, those without a required
        consent, the forgotten and those over the frequency cap. `dry_run` writes
        nothing; `confirm` logs the selection for the cap (409 if the campaign
        was confirmed before)."""
        access.note_records(len(customers))
        if (refused := self._not_served(target)) is not None:
            return refused  # type: ignore[return-value]
        if (budget is None) == (threshold is None):
            return _bad_request("budget, threshold: give exactly one")  # type: ignore[return-value]
        try:
            contact = self.contact_policy.read(
                self.config.outreach, self.config.privacy
            )
        except (ConfigError, OptOutFileError) as exc:
            return _unavailable("outreach", exc)  # type: ignore[return-value]
        if (rejected := self._rejected([c.features for c in customers])) is not None:
            return rejected  # type: ignore[return-value]
        try:
            outcome = campaign.run(
                campaign_id,
                target,
                [
                    campaign.Offered(c.customer_id, c.features, c.value, c.consent)
                    for c in customers
                ],
                rules=campaign.Rules(budget, threshold, contact_cost, control_share),
                mode=mode,
                settings=self.config.outreach,
                contact=contact,
                pseudonyms=self.pseudonyms,
                score=lambda kept: self._score(target, kept),
                benefit=(
                    (lambda kept: self._benefit(target, kept))
                    if target in self.uplift
                    else None
                ),
            )
        except AlreadyConfirmed as exc:
            return _conflict(exc)  # type: ignore[return-value]
        except ContactLogError as exc:
            return _unavailable("outreach", exc)  # type: ignore[return-value]
        except ValueError as exc:
            return _bad_request(str(exc))  # type: ignore[return-value]
        return self._outreach_response(outcome, target, mode)

    def _score(
        self, target: str, kept: Sequence[campaign.Offered]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The champion's matrix and probabilities for the customers a campaign
        did not exclude."""
        if not kept:
            return np.empty((0, 0)), np.empty(0)
        matrix = self.champions.matrix([dict(c.features) for c in kept], target)
        probabilities = self.champions.models[target].predict(matrix)
        _count("outreach", [target], len(kept))
        return matrix, probabilities

    def _benefit(self, target: str, kept: Sequence[campaign.Offered]) -> np.ndarray:
        """The uplift champion's benefit per contact for the kept customers."""
        model = self.uplift[target]
        return model.benefit(uplift_matrix(model, [dict(c.features) for c in kept]))

    def _outreach_response(
        self,
        outcome: campaign.Outcome,
        target: str,
        mode: Literal["dry_run", "confirm"],
    ) -> OutreachResponse:
        model = self.champions.models[target]
        selection = outcome.selection
        # reason codes only for the selected: attribution is the costly part
        explain = self.config.explain
        found = (
            reasons(
                model,
                outcome.matrix[outcome.rows_of_selected()],
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
            confirmed_at=outcome.confirmed_at,
            model_version=model.version,
            ranking=selection.ranking,
            uplift_model_version=(
                self.uplift[target].version if selection.ranking == "uplift" else None
            ),
            selected=[
                OutreachRow(
                    customer_id=r.customer_id,
                    probability=r.probability,
                    expected_value=r.expected_value,
                    uplift=r.uplift,
                    rank=r.rank,
                    group=r.group,
                    reasons=[ReasonOut.of(x) for x in rs],
                )
                for r, rs in zip(selection.rows, found, strict=True)
            ],
            counts=OutreachCounts(
                eligible=selection.eligible,
                selected=selection.selected,
                held_out=selection.held_out,
                dropped_non_positive=selection.dropped_non_positive,
                excluded=OutreachExcluded(**outcome.excluded),
            ),
            reasons=outcome.notes + selection.reasons,
        )

    @bentoml.api
    def campaign_report(
        self,
        campaign_id: Annotated[
            str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
        ],
        outcome_events: Annotated[list[str] | None, Field(max_length=20)] = None,
        horizon_days: Annotated[int | None, Field(ge=1, le=3650)] = None,
    ) -> dict:
        """The readout of a confirmed campaign, as `propensity campaigns report
        ID --format json` gives it: outcome rate and revenue per group, lifts
        with 95% intervals and p-values, incremental outcomes and revenue, cost
        and ROI, deciles of the score at selection, the sample-ratio check, and
        whether the outcome window has passed (`mature`, `days_remaining`).
        `outcome_events` counts an event of those types as the outcome instead
        of the target's label. It reads the events as the config says at each
        call (404 for an unknown campaign, 503 when the data cannot be read);
        it logs no MLflow run (the CLI does)."""
        config = self.config
        try:
            ds = load_project(
                config, con=connect(config.engine.memory_limit, config.engine.threads)
            )
            return readout(
                config,
                ds,
                campaign_id,
                event_types=outcome_events or (),
                horizon_days=horizon_days,
            )
        except ReadoutError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)  # type: ignore[return-value]
        except (ContractError, ContactLogError, OSError) as exc:
            return _unavailable("campaign_report", exc)  # type: ignore[return-value]

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
        access.note_records(len(customer_ids))
        try:
            erasure = forget.forget(self.config, customer_ids)
        except Busy as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)  # type: ignore[return-value]
        return ForgetResponse(
            forgotten=len(erasure.customers),
            rows_removed=erasure.rows(),
            places={p: sum(ids.values()) for p, ids in erasure.removed.items()},
        )

    def _ingest(self):
        from serving.ingest.live import Ingester

        with self._ingester_lock:
            if self._ingester is None:
                self._ingester = Ingester(
                    self.config, refresh=self.config.ingest.refresh
                )
        return self._ingester

    @bentoml.api(route="/events")
    async def events(self, events: list[dict[str, Any]]) -> IngestResponse:
        """Real-time events (ingest scope), up to `ingest.max_events` a batch
        (more: 413): checked by the data contract like a file (a bad one: 422
        naming the row and field, nothing applied), appended to the event log
        the next nightly run reads, and applied to the customers'
        predict_by_id rows before the answer. An `event_id` makes a resent
        event count once; the forgotten's events are dropped."""
        from serving.ingest.batch import TooMany, problem_json

        access.note_records(len(events))
        try:
            outcome = await self._ingest().ingest_async(events, "POST /events")
        except TooMany as exc:
            return JSONResponse({"error": str(exc)}, status_code=413)  # type: ignore[return-value]
        except ContractError as exc:
            return JSONResponse(  # type: ignore[return-value]
                {
                    "error": str(exc),
                    "problems": [problem_json(p) for p in exc.problems],
                },
                status_code=422,
            )
        except online_store.StoreError as exc:
            return _unavailable("events", exc)  # type: ignore[return-value]
        except ConfigError as exc:  # e.g. features.classic: no live rows
            return JSONResponse({"error": str(exc)}, status_code=409)  # type: ignore[return-value]
        return IngestResponse(
            received=outcome.received,
            accepted=outcome.accepted,
            duplicates=outcome.duplicates,
            suppressed=outcome.suppressed,
            customers=outcome.customers,
            as_of=outcome.as_of,
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
                population=meta.get("population"),
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
    """The access log, API keys, the per-key rate limit and the request size
    limit (serving/api/guard.py). BentoML builds its middleware in each worker:
    the config and the keys are read there, not when this module is imported."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = guard(app, load_config(config_path()).api)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def _docs(scope: Scope, receive: Receive, send: Send) -> None:
    """/docs: the Swagger page BentoML serves at /, its spec at /docs.json."""
    await RedirectResponse("/")(scope, receive, send)


class ConsoleApp:
    """The web console (serving.console), built at its first request in each
    worker from the same config as the API."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            from serving.console.app import create_app

            path = config_path()
            self.app = create_app(load_config(path), path.resolve().parent)
        await self.app(scope, receive, send)


Propensity.add_asgi_middleware(ApiGuard)
# inside the guard (the access log sees the docs), in front of BentoML's pages
Propensity.add_asgi_middleware(DocsPages, service=Propensity)
Propensity.mount_asgi_app(_docs, path="/docs")
Propensity.mount_asgi_app(ConsoleApp(), path=CONSOLE)
