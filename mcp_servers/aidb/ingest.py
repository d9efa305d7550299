"""ingest_path: store every matching text file under an allowed root, updating changed ones, skipping the rest.

Each file's resolved path is its document `source`, so a changed file updates its document and an unchanged
one is recognised by its content hash without re-embedding.
"""

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import anyio

from mcp_servers.aidb import paths
from mcp_servers.aidb.documents import DocumentDeps, PreparedDocument, prepare_document, store_documents
from mcp_servers.aidb.models import IngestRequest, IngestResult, Kind, SkippedFile, SkippedSummary, StoreRequest

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], Awaitable[None]]
"""Called with (files done, files to do, a one-line message) after each batch and at least every few seconds."""

PROGRESS_EVERY_SECONDS = 2.0
SKIPPED_EXAMPLES = 5

_FS_LIMITER = anyio.CapacityLimiter(2)

# Files are stored in batches: one embedder call, one commit and one index update per batch, which is most of
# what makes ingest_path faster than a store_document call per file (bench/aidb.py measures both).
_BATCH_FILES = 32
_BATCH_BYTES = 4 * 1024 * 1024  # a batch closes once its files hold this much text
_CONCURRENT_WRITE = "a concurrent write stored this content or path first; run ingest_path again"

_CODE_KIND_SUFFIXES = frozenset(
    ".py .js .ts .tsx .jsx .go .rs .java .c .h .cpp .hpp .cs .rb .sh .sql .kt .swift .scala .php .lua".split()  # noqa: SIM905
)


def kind_for(name: str) -> Kind:
    """`code` for source files, `doc` for everything else."""
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    return "code" if suffix in _CODE_KIND_SUFFIXES else "doc"


async def ingest_path(
    deps: DocumentDeps, request: IngestRequest, progress: ProgressCallback | None = None
) -> IngestResult:
    """Store the files under `request.path` that match its glob; report progress after each batch of files and
    at least every PROGRESS_EVERY_SECONDS while files are read."""
    settings = deps.aidb
    roots = settings.allowed_roots
    target, _ = await anyio.to_thread.run_sync(paths.resolve_target, request.path, roots, limiter=_FS_LIMITER)
    candidates, refused = await anyio.to_thread.run_sync(
        paths.walk, target, roots, request.glob, settings.max_ingest_files, limiter=_FS_LIMITER
    )
    skipped = [SkippedFile(path=s.relative, reason=s.reason) for s in refused]
    counts = {"created": 0, "updated": 0, "duplicate": 0}
    document_ids: list[str] = []
    total = len(candidates)
    last_report = time.monotonic()

    async def report(done: int) -> None:
        nonlocal last_report
        last_report = time.monotonic()
        if progress is not None:
            message = (
                f"{done} of {total} files: {counts['created']} new, {counts['updated']} updated, "
                f"{counts['duplicate']} unchanged, {len(skipped)} skipped"
            )
            await progress(done, total, message)

    await report(0)
    batch: list[tuple[paths.Candidate, PreparedDocument]] = []
    batch_bytes = 0

    async def flush(done: int) -> None:
        nonlocal batch, batch_bytes
        results = await store_documents(deps, [document for _, document in batch]) if batch else []
        for (candidate, _), result in zip(batch, results, strict=True):
            if result is None:
                skipped.append(SkippedFile(path=candidate.relative, reason=_CONCURRENT_WRITE))
                continue
            counts[result.status] += 1
            if result.status != "duplicate":
                document_ids.append(result.document_id)
        batch, batch_bytes = [], 0
        await report(done)

    for done, candidate in enumerate(candidates, start=1):
        loaded = await anyio.to_thread.run_sync(
            paths.read_text_file, candidate.path, settings.max_document_bytes, limiter=_FS_LIMITER
        )
        if isinstance(loaded, str):
            skipped.append(SkippedFile(path=candidate.relative, reason=loaded))
        elif not loaded.text.strip():
            skipped.append(SkippedFile(path=candidate.relative, reason="empty file"))
        else:
            file = StoreRequest(
                loaded.text,
                title=loaded.title or candidate.relative,
                project=request.project,
                kind=kind_for(loaded.name or candidate.path.name),
                source=str(candidate.path),
            )
            document = await prepare_document(deps, file)
            batch.append((candidate, document))
            batch_bytes += loaded.size_bytes
        if len(batch) >= _BATCH_FILES or batch_bytes >= _BATCH_BYTES or done == total:
            await flush(done)
        elif time.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
            await report(done)
    created, updated, unchanged = counts["created"], counts["updated"], counts["duplicate"]
    logger.info(
        "ingest finished",
        # "created" is a LogRecord attribute: logging refuses it as an extra key.
        extra={
            "files": total,
            "documents_created": created,
            "documents_updated": updated,
            "unchanged": unchanged,
            "skipped": len(skipped),
        },
    )
    return IngestResult(
        files_seen=total + len(refused),
        created=created,
        updated=updated,
        unchanged=unchanged,
        skipped=summarise_skipped(skipped),
        document_ids=document_ids,
    )


def summarise_skipped(skipped: list[SkippedFile]) -> SkippedSummary:
    """How many files were skipped, by reason, with the first few as examples (a tree can skip thousands)."""
    by_reason = Counter(file.reason for file in skipped)
    return SkippedSummary(
        total=len(skipped), by_reason=dict(by_reason.most_common()), examples=skipped[:SKIPPED_EXAMPLES]
    )
