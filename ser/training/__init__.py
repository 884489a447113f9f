"""Making and judging emotion models.

- :mod:`ser.training.datasets` — corpus readers (RAVDESS, ASED, EmoDB, CREMA-D, TESS, SAVEE,
  folder + CSV), their labels mapped onto the shared label sets;
- :mod:`ser.training.train` — training one architecture with speaker-grouped folds;
- :mod:`ser.training.multicorpus` — the shipped multi-corpus Whisper-feature model, built from
  :mod:`~ser.training.heads` (cached pooled features, fitted heads) and judged by
  :mod:`~ser.training.protocols` (speaker-grouped CV, leave-one-corpus-out);
- :mod:`ser.training.evaluate`, :mod:`ser.training.tune`, :mod:`ser.training.report` — held-out
  evaluation, hyper-parameter search, the trust table of a model card.
"""
