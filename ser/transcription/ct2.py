"""Whisper-base for CTranslate2, kept as int8 safetensors and rebuilt in memory.

CTranslate2 reads a ``model.bin`` (binary format 6: a header, then ``name, shape, dtype,
bytes`` per variable, then aliases; :func:`ser.emotion.whisper.read_ct2` reads it). We ship the
variables as safetensors (``models/whisper-base/``) — int8 where CTranslate2 itself would
quantize (every linear layer and the token embeddings, one scale per row: ``w ≈ q / scale``),
the rest as published (float16) — and :func:`model_files` writes the ``model.bin`` bytes in
memory for ``faster_whisper.WhisperModel(files=...)``. Nothing is downloaded or unpacked to disk.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np

CT2_VERSION = 6
_CODES = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
          np.dtype(np.float16): 4}


def quantizable(name: str, value: np.ndarray) -> bool:
    """What CTranslate2's own int8 conversion quantizes: linear weights and the embeddings."""
    return value.ndim == 2 and value.dtype.kind == "f" and (
        "/linear_" in name or name == "decoder/embeddings/weight")


def quantize_int8(value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CTranslate2's int8 scheme: per row, ``scale = 127 / max|w|``, ``q = rint(w * scale)``."""
    w = value.astype(np.float32)
    amax = np.abs(w).max(axis=1)
    amax[amax == 0] = 127.0
    scale = (127.0 / amax).astype(np.float32)
    return np.rint(w * scale[:, None]).astype(np.int8), scale


def write_ct2(variables: dict[str, np.ndarray], spec: str, revision: int, aliases: dict[str, str]) -> bytes:
    """The ``model.bin`` bytes of ``variables`` (names in CTranslate2's scope syntax)."""

    def string(s: str) -> bytes:
        b = s.encode("utf-8") + b"\0"
        return struct.pack("<H", len(b)) + b

    parts = [struct.pack("<I", CT2_VERSION), string(spec), struct.pack("<I", revision),
             struct.pack("<I", len(variables))]
    for name, value in variables.items():
        a = np.asarray(value)
        a = a if a.flags.c_contiguous else a.copy()  # (np.ascontiguousarray would make a 0-d value 1-d)
        parts += [string(name), struct.pack("<B", a.ndim), *(struct.pack("<I", d) for d in a.shape),
                  struct.pack("<B", _CODES[a.dtype]), struct.pack("<I", a.nbytes), a.tobytes()]
    parts.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        parts += [string(alias), string(target)]
    return b"".join(parts)


def read_model_bin(data: bytes) -> tuple[str, int, dict[str, np.ndarray], dict[str, str]]:
    """``model.bin`` bytes -> (spec name, spec revision, variables in file order, aliases)."""
    from ser.emotion.whisper import _CT2_DTYPES

    pos = 0

    def take(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("H")
        s = data[pos:pos + n - 1].decode("utf-8")
        pos += n
        return s

    if (version := take("I")) != CT2_VERSION:
        raise ValueError(f"CTranslate2 binary version {version}; this reader knows version {CT2_VERSION}.")
    spec, revision = string(), take("I")
    variables = {}
    for _ in range(take("I")):
        name = string()
        shape = [take("I") for _ in range(take("B"))]
        dtype = np.dtype(_CT2_DTYPES[take("B")])
        nbytes = take("I")
        variables[name] = np.frombuffer(data, dtype, count=nbytes // dtype.itemsize, offset=pos).reshape(shape)
        pos += nbytes
    aliases = {}
    if pos < len(data):
        for _ in range(take("I")):
            alias = string()
            aliases[alias] = string()
    return spec, revision, variables, aliases


def to_safetensors(ct2: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A CT2 Whisper's variables -> safetensors tensors: int8 + ``*_scale`` where quantizable;
    0-d values (flags, head counts) kept as 1-element arrays (``meta.json`` restores their shape)."""
    out = {}
    for name, value in ct2.items():
        if quantizable(name, value):
            q, scale = quantize_int8(value)
            out[name], out[name + "_scale"] = q, scale
        else:
            out[name] = np.array(value).reshape(-1) if np.ndim(value) == 0 else np.array(value)
    return out


def model_files(folder: str | Path) -> dict[str, bytes]:
    """``{"model.bin", "config.json", "vocabulary.txt", "tokenizer.json"}`` as bytes, for
    ``faster_whisper.WhisperModel(str(folder), files=...)``. Checks each file's sha256 against
    ``meta.json`` (a damaged or swapped download is refused, not decoded)."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    for name, digest in meta["sha256"].items():
        if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest:
            raise ValueError(f"{folder / name}: sha256 does not match meta.json; refusing to load it.")
    tensors: dict[str, np.ndarray] = {}
    for shard in meta["shards"]:
        tensors.update(load_file(folder / shard))
    variables = {}
    for name in meta["order"]:
        value = tensors[name]
        variables[name] = value.reshape(()) if name in meta["scalars"] else value
    model_bin = write_ct2(variables, meta["spec"], meta["revision"], meta["aliases"])
    return {"model.bin": model_bin, **{n: (folder / n).read_bytes() for n in
                                       ("config.json", "vocabulary.txt", "tokenizer.json")}}
