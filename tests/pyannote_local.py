"""A pyannote.audio 4 speaker-diarization pipeline with random weights, saved to a folder.

pyannote's own architectures (PyanNet segmentation, WeSpeaker ResNet34 embedding) are
instantiated untrained and written as pyannote checkpoints next to a ``config.yaml``,
the same layout as a git clone of a pipeline repository. It exercises the loading and
calling code of the pyannote backend without any download; its output is meaningless.
"""

from __future__ import annotations

from pathlib import Path


def _save(model, path: Path) -> None:
    import torch
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(ckpt)
    ckpt["pytorch-lightning_version"] = "2.0.0"
    torch.save(ckpt, path)


def build_pipeline_folder(folder: Path) -> Path:
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(0)
    folder = Path(folder)
    (folder / "segmentation").mkdir(parents=True, exist_ok=True)
    (folder / "embedding").mkdir(parents=True, exist_ok=True)
    seg = PyanNet(sincnet={"stride": 10})
    seg.specifications = Specifications(problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME,
                                        duration=5.0, classes=["s1", "s2", "s3"], powerset_max_classes=2,
                                        permutation_invariant=True)
    seg.build()
    _save(seg, folder / "segmentation" / "pytorch_model.bin")
    emb = WeSpeakerResNet34()
    emb.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0)
    _save(emb, folder / "embedding" / "pytorch_model.bin")
    import numpy as np
    rng = np.random.default_rng(0)
    (folder / "plda").mkdir(exist_ok=True)
    np.savez(folder / "plda" / "xvec_transform.npz", mean1=rng.normal(size=256), mean2=rng.normal(size=128),
             lda=rng.normal(size=(256, 128)))
    np.savez(folder / "plda" / "plda.npz", mu=rng.normal(size=128), tr=np.eye(128) + 0.1 * rng.normal(size=(128, 128)),
             psi=rng.uniform(0.5, 2.0, size=128))
    (folder / "config.yaml").write_text(
        "dependencies:\n  pyannote.audio: 4.0.0\n"
        "pipeline:\n  name: pyannote.audio.pipelines.SpeakerDiarization\n  params:\n"
        "    clustering: AgglomerativeClustering\n"
        "    embedding: $model/embedding\n    embedding_batch_size: 8\n    embedding_exclude_overlap: true\n"
        "    segmentation: $model/segmentation\n    segmentation_batch_size: 8\n    plda: $model/plda\n"
        "params:\n  clustering:\n    method: centroid\n    min_cluster_size: 2\n    threshold: 0.7\n"
        "  segmentation:\n    min_duration_off: 0.0\n", encoding="utf-8")
    return folder
