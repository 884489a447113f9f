"""Hyperparameter search with Optuna (``ser tune``), as the original GRU project did.

The objective is the speaker-grouped cross-validation UAR (mean over folds of the test
fold's UAR, the same protocol as ``ser train``). Trials are stored in a local SQLite
study, so an interrupted search resumes where it stopped (same ``--study`` file and
name). After each finished trial the best configuration so far is written as a JSON
file that ``ser train --config`` accepts.

Unpromising trials stop early: after each fold the running mean is reported and
Optuna's median pruner stops a trial that is below the median of earlier trials at the
same fold.

Note: choosing the configuration by the same folds that report it makes the best
trial's UAR optimistically biased; quote a fresh ``ser train`` run with another seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ser.errors import ConfigError
from ser.training.train import TrainConfig

#: name -> (kind, low, high[, log]) or ("choice", [values])
SEARCH_SPACE: dict[str, tuple] = {
    "lr": ("float", 1e-3, 1e-2, True),
    "weight_decay": ("float", 1e-3, 5e-2, True),
    "label_smoothing": ("float", 0.0, 0.2, False),
    "mixup_alpha": ("float", 0.0, 0.4, False),
    "crop_s": ("float", 1.0, 2.5, False),
    "noise_p": ("float", 0.0, 0.8, False),
    "gain_db": ("float", 0.0, 9.0, False),
    "pitch_p": ("float", 0.0, 0.5, False),
    "batch_size": ("choice", [16, 32, 64]),
}


def suggest(trial: Any, base: TrainConfig, space: dict[str, tuple] = SEARCH_SPACE) -> TrainConfig:
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if spec[0] == "float":
            params[name] = trial.suggest_float(name, spec[1], spec[2], log=bool(spec[3]))
        elif spec[0] == "int":
            params[name] = trial.suggest_int(name, spec[1], spec[2])
        elif spec[0] == "choice":
            params[name] = trial.suggest_categorical(name, list(spec[1]))
        else:  # pragma: no cover - programming error
            raise ConfigError(f"Unknown search-space kind {spec[0]!r} for {name}.")
    return base.override(**params)


def run_tuning(data: str | Path, corpus: str, base: TrainConfig, *, trials: int, study_path: str | Path,
               study_name: str = "ser", out_config: str | Path, timeout_s: float | None = None,
               log: Callable[[str], None] = print) -> dict:
    """Run (or resume) a study; returns {"best_value", "best_params", "trials_done", "config"}."""
    import numpy as np
    import optuna

    from ser.training.datasets import read_corpus
    from ser.training.train import add_pitch_shifts, cross_validate, prepare_clips

    if trials < 1:
        raise ConfigError("--trials must be at least 1.")
    if base.arch == "whisper":
        raise ConfigError("ser tune searches the training options of the networks trained from scratch (--arch sercnn, "
                          "cnn2d, ...). The whisper model has one head setting (--head-c) and the augmentation count; "
                          "compare those with `ser evaluate --protocol loco --head-c C --augment K`.")
    study_path = Path(study_path)
    study_path.parent.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{study_path.resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=base.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    todo = max(0, trials - len(done))
    log(f"study {study_name!r} in {study_path}: {len(done)} trial(s) done, {todo} to run")

    utterances = read_corpus(corpus, data)
    need_pooled = base.arch == "logreg"
    clips, labels = prepare_clips(utterances, base, need_pooled=need_pooled)
    if not need_pooled and base.pitch_semitones > 0:
        add_pitch_shifts(clips, base.pitch_semitones)

    def objective(trial: Any) -> float:
        cfg = suggest(trial, base)
        uars: list[float] = []

        def report(k: int, m: dict) -> None:
            uars.append(m["uar"])
            trial.report(float(np.mean(uars)), k)
            log(f"trial {trial.number} fold {k + 1}/{cfg.folds}: UAR {m['uar']:.3f} (mean so far {np.mean(uars):.3f})")
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = cross_validate(clips, labels, cfg, on_fold=report)
        trial.set_user_attr("fold_uar", uars)
        return float(result["summary"]["uar"]["mean"])

    def write_best(study: Any, _trial: Any) -> None:
        try:
            best = study.best_trial
        except ValueError:
            return
        cfg = base.override(**best.params).to_dict()
        cfg.pop("threads", None)
        Path(out_config).parent.mkdir(parents=True, exist_ok=True)
        Path(out_config).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")

    if todo:
        study.optimize(objective, n_trials=todo, timeout=timeout_s, callbacks=[write_best], catch=())
    write_best(study, None)
    try:
        best = study.best_trial
    except ValueError:
        raise ConfigError("No trial finished yet (all pruned or interrupted); run ser tune again to resume.")
    log(f"best trial {best.number}: CV UAR {best.value:.3f} with {best.params}; config written to {out_config}")
    return {"best_value": best.value, "best_params": best.params, "best_trial": best.number,
            "trials_done": len([t for t in study.trials if t.state.is_finished()]), "config": str(out_config)}
