"""The serve image's Open Inference Protocol v2 server: MLServer with a custom runtime for skops models.

MLServer (1.7, pandas 3 compatible; KServe's SDK pins pandas<3) provides the protocol: its data plane,
model registry, pandas codec and FastAPI app. This module adds what the project needs around it:
requests checked against the model signature (400 naming the column), bounded bodies (413), malformed
JSON as 400, the production pointer followed while serving, every response naming its model version,
and each request logged by :mod:`mlops_runtime.prediction_log`. Only imported by the serve image.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import numpy as np
import uvicorn
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, PandasCodec, StringCodec
from mlserver.errors import InferenceError
from mlserver.handlers import DataPlane, ModelRepositoryHandlers
from mlserver.registry import MultiModelRegistry
from mlserver.repository.factory import ModelRepositoryFactory
from mlserver.rest.app import create_app
from mlserver.settings import ModelParameters, ModelSettings, Settings
from mlserver.types import InferenceRequest, InferenceResponse, MetadataModelResponse, MetadataTensor, Parameters

from mlops_runtime.errors import ComponentError
from mlops_runtime.log import get_logger
from mlops_runtime.prediction_log import PredictionLog, probability_column
from mlops_runtime.served_model import ModelSource, ServedModel

log = get_logger("serve")
PLATFORM = "mlops-components/skops"
DATATYPES = {"numeric": "FP64", "categorical": "BYTES", "datetime": "BYTES"}


class SkopsRuntime(MLModel):
    """One served model name; the version behind it can change while serving (the production pointer)."""

    def __init__(self, settings: ModelSettings, *, source: ModelSource, first: ServedModel,
                 prediction_log: PredictionLog | None, poll_seconds: float) -> None:
        super().__init__(settings)
        self._source, self._served, self._log, self._poll_seconds = source, first, prediction_log, poll_seconds
        self._follower: asyncio.Task | None = None
        self.reload_failures = 0

    @property
    def served(self) -> ServedModel:
        return self._served

    async def load(self) -> bool:
        if self._source.follows_production:
            self._follower = asyncio.create_task(self._follow_production())
        return True

    async def unload(self) -> bool:
        if self._follower is not None:
            self._follower.cancel()
        return True

    async def _follow_production(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                version = await asyncio.to_thread(self._source.production_version)
                if version is not None and version != self._served.version:
                    served = await asyncio.to_thread(self._source.load)
                    log.info("serving version %s (was %s)", served.version, self._served.version)
                    self._served = served  # one reference swap: a request uses one version throughout
            except Exception as error:  # keep serving the loaded version; retry next time
                self.reload_failures += 1
                log.warning("production pointer check failed, still serving %s: %s", self._served.version,
                            error if isinstance(error, ComponentError) else f"{type(error).__name__}: {error}")

    async def metadata(self) -> MetadataModelResponse:
        served = self._served
        inputs = [MetadataTensor(name=f["name"], datatype=DATATYPES.get(f["kind"], "BYTES"), shape=[-1])
                  for f in served.signature["features"]]
        outputs = [MetadataTensor(name="predict", datatype="BYTES", shape=[-1])]
        if served.classes is not None:
            outputs.append(MetadataTensor(name="predict_proba", datatype="FP64", shape=[-1, len(served.classes)]))
        return MetadataModelResponse(name=self.name, versions=[served.version], platform=PLATFORM,
                                     inputs=inputs, outputs=outputs,
                                     parameters=Parameters(content_type="pd", task=served.signature.get("task")))

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        served = self._served
        try:
            table = PandasCodec.decode_request(payload)
        except Exception as error:
            raise InferenceError(_undecodable(payload, error)) from None
        if len(table) == 0:
            raise InferenceError("the request has no rows")
        try:
            features, outputs = served.predict(table, label="inputs")
        except ComponentError as error:
            raise InferenceError(str(error)) from None
        response_outputs = [_encode("predict", outputs["predict"])]
        if "predict_proba" in outputs:
            proba = NumpyCodec.encode_output("predict_proba", outputs["predict_proba"])
            proba.parameters = Parameters(classes=[str(c) for c in served.classes or []])
            response_outputs.append(proba)
        if self._log is not None:
            logged = {"prediction": outputs["predict"]}
            if "predict_proba" in outputs:
                for index, cls in enumerate(served.classes or []):
                    logged[probability_column(cls)] = outputs["predict_proba"][:, index]
            self._log.record(payload.id or "", int(served.version) if served.version.isdigit() else -1,
                             features, logged, timestamp=dt.datetime.now(dt.UTC))
        return InferenceResponse(model_name=self.name, model_version=served.version, id=payload.id,
                                 outputs=response_outputs, parameters=Parameters(model_version=served.version))


def _undecodable(payload: InferenceRequest, error: Exception) -> str:
    """Which input could not be decoded, and why (the codec's message does not name it)."""
    for tensor in payload.inputs:
        try:
            PandasCodec.decode_request(InferenceRequest(inputs=[tensor]))
        except Exception as own:
            return f"input '{tensor.name}' cannot be read as {tensor.datatype} values ({own})"
    return f"the inputs cannot be read as named columns ({type(error).__name__}: {error})"


def _encode(name: str, values: np.ndarray):
    if values.dtype.kind in "iufb":
        return NumpyCodec.encode_output(name, values)
    return StringCodec.encode_output(name, [str(v) for v in values])


class BodyLimit:
    """ASGI wrapper: refuses bodies over ``max_bytes`` (413) and compressed bodies (415) before parsing."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if headers.get("content-encoding", "identity").lower() not in ("", "identity"):
            return await _refuse(send, 415, "compressed request bodies are not accepted")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await _refuse(send, 413, f"the request body is over {self.max_bytes} bytes")
        seen, refused = 0, False

        async def bounded_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        async def refusing_send(message: dict) -> None:
            # The app answers a body cut short with its own error; a body over the limit gets 413 instead.
            nonlocal refused
            if seen <= self.max_bytes:
                return await send(message)
            if not refused:
                refused = True
                await _refuse(send, 413, f"the request body is over {self.max_bytes} bytes")

        try:
            await self.app(scope, bounded_receive, refusing_send)
        except _TooLarge:
            if not refused:
                await _refuse(send, 413, f"the request body is over {self.max_bytes} bytes")


class _TooLarge(Exception):
    pass


async def _refuse(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _bad_request(_request: Any, error: RequestValidationError) -> JSONResponse:
    problems = error.errors()
    first = problems[0] if problems else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    text = f"malformed request: {first.get('msg', 'invalid body')}" + (f" at {where}" if where else "")
    return JSONResponse({"error": text}, status_code=400)


def build_app(runtime_settings: Settings, registry: MultiModelRegistry, prediction_log: PredictionLog | None,
              max_body_bytes: int) -> Any:
    data_plane = DataPlane(settings=runtime_settings, model_registry=registry)
    repository = ModelRepositoryFactory.resolve_model_repository(runtime_settings)
    app = create_app(runtime_settings, data_plane=data_plane,
                     model_repository_handlers=ModelRepositoryHandlers(repository=repository, model_registry=registry))
    # The model repository API (load/unload any model from disk) has no place in a one-model server.
    app.router.routes[:] = [r for r in app.router.routes if not getattr(r, "path", "").startswith("/v2/repository")]
    app.add_exception_handler(RequestValidationError, _bad_request)

    async def prediction_log_stats() -> dict:
        return prediction_log.stats() if prediction_log is not None else {}

    app.add_api_route("/metrics/prediction-log", prediction_log_stats, methods=["GET"])
    return BodyLimit(app, max_body_bytes)


def run(main: Any) -> Any:
    """Run the server coroutine on uvloop, the event loop MLServer and uvicorn choose when it is installed."""
    import uvloop

    return uvloop.run(main)


async def serve(source: ModelSource, first: ServedModel, *, host: str, port: int, poll_seconds: float,
                prediction_log: PredictionLog | None, max_body_bytes: int, workdir: str) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests finish first, then the prediction log is flushed."""
    runtime_settings = Settings(host=host, http_port=port, parallel_workers=0, metrics_endpoint=None, debug=False,
                                load_models_at_startup=False, model_repository_root=workdir)
    model_settings = ModelSettings(name=source.model_name, implementation=SkopsRuntime,
                                   parameters=ModelParameters(uri=first.model_uri))

    def initialise(settings: ModelSettings) -> SkopsRuntime:
        return SkopsRuntime(settings, source=source, first=first, prediction_log=prediction_log,
                            poll_seconds=poll_seconds)

    registry = MultiModelRegistry(model_initialiser=initialise)
    await registry.load(model_settings)
    app = build_app(runtime_settings, registry, prediction_log, max_body_bytes)
    config = uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning",
                            timeout_graceful_shutdown=20)
    server = uvicorn.Server(config)
    log.info("serving %s version %s on http://%s:%d (OIP v2)", source.model_name, first.version, host, port)
    try:
        await server.serve()
    finally:
        await registry.unload(source.model_name)
        if prediction_log is not None:
            stats = await asyncio.to_thread(prediction_log.close)
            log.info("prediction log closed: %s", json.dumps(stats, sort_keys=True))
