"""Models: the card of every available model, its cross-validated figures, the active choice, and the
speaker diarizer's networks and measured error rates."""

from __future__ import annotations

import json

import streamlit as st

from pages import plain, through_app


from ser.diarization.backends import diarizer_card
from ser.errors import SERError
from ser.analysis.figures import trust_figure
from ser.emotion.folder import available_models, resolve_model_dir
from ser.training.report import trust_table

through_app()  # not past app.py's sign-in gate (a first visitor's deep link)

st.title("Models")
st.caption("What each model was trained on, how it was measured, and how far to trust its probabilities.")

names = available_models()
if not names:
    st.error("No model found under models/. Train one with `ser train` (see README).")
    st.stop()
active = st.session_state.get("model_name", "default")
choice = st.selectbox("Model", names, index=names.index(active) if active in names else 0, key="models_pick")
if choice != active:
    if st.button(f"Use {choice} for analyses", key="models_activate"):
        st.session_state.model_choice = choice
        st.rerun()

try:
    folder = resolve_model_dir(choice)
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
except (OSError, ValueError, SERError) as exc:
    st.error(f"Cannot read the card of {plain(choice)}: {plain(exc)}")
    st.stop()

m = card.get("metrics") or {}
cal = m.get("calibration") or {}
rows = trust_table(card)
loco = [r for r in rows if r["loco_uar"] is not None]
if loco:  # what a user should expect first: a recording unlike the training corpora
    st.subheader("What to expect on your own recordings")
    e1, e2, e3 = st.columns(3)
    lo, hi = min(r["loco_uar"] for r in loco), max(r["loco_uar"] for r in loco)
    e1.metric("UAR on a corpus it never saw", f"{lo:.2f}–{hi:.2f}",
              help="leave-one-corpus-out: trained without that corpus, scored on the classes it shares")
    chances = [r["loco_chance"] for r in loco if r["loco_chance"] is not None]
    if chances:
        e2.metric("Chance on those classes", f"{min(chances):.2f}–{max(chances):.2f}")
    humans = [r for r in rows if r["human_uar"] is not None]
    if humans:
        e3.metric(f"Human raters ({humans[0]['corpus']})", f"{humans[0]['human_uar']:.2f}")
    st.caption("UAR is the mean of the per-emotion recalls. Natural, unacted speech scores lower than acted "
               "corpora; adapting to the recording (Analyze page) usually helps. Details below.")
if m.get("uar") or cal:
    st.subheader("Within its training corpora" if loco else "Measured figures")
c1, c2, c3, c4 = st.columns(4)
if m.get("uar"):
    c1.metric("UAR, pooled CV (all its corpora)" if m.get("per_corpus") else "UAR (speaker-grouped CV)", f"{m['uar']['mean']:.3f}", f"± {m['uar']['std']:.3f}", delta_color="off")
    c2.metric("Accuracy", f"{m['accuracy']['mean']:.3f}", f"± {m['accuracy']['std']:.3f}", delta_color="off")
    c3.metric("Macro-F1", f"{m['macro_f1']['mean']:.3f}", f"± {m['macro_f1']['std']:.3f}", delta_color="off")
if cal:  # lower is better: a drop shows green, pointing down
    c4.metric("ECE after calibration", f"{cal['ece_after']:.3f}",
              f"{cal['ece_after'] - cal['ece_before']:+.3f} vs before ({cal['ece_before']:.3f})", delta_color="inverse")

if rows:
    st.subheader("How far to trust it on your kind of audio")
    st.caption("UAR (unweighted average recall: the mean of per-emotion recall; chance = 1 / classes). "
               "**Speakers never seen**: speaker-grouped cross-validation — the corpus was in training, its test "
               "speakers were not. **Corpus never seen**: leave-one-corpus-out — trained on the other corpora "
               "only, scored on the classes they share. The second is the figure to expect on a new kind of "
               "recording; on natural (not acted) speech expect less.")
    st.dataframe(  # "—": not measured for that corpus
        [{"Corpus": r["corpus"], "In training": "yes" if r["in_training"] else "no",
          "UAR, speakers never seen": "—" if r["cv_uar"] is None else f"{r['cv_uar']:.2f}" + (
              f" ± {r['cv_uar_std']:.2f}" if r["cv_uar_std"] is not None else ""),
          "chance (CV)": "—" if r["cv_chance"] is None else f"{r['cv_chance']:.2f} ({r['cv_classes']} classes)",
          "UAR, corpus never seen": "—" if r["loco_uar"] is None else f"{r['loco_uar']:.2f}",
          "chance (LOCO)": "—" if r["loco_chance"] is None else f"{r['loco_chance']:.2f} ({r['loco_classes']} classes)",
          "Human raters": "—" if r["human_uar"] is None else f"{r['human_uar']:.2f}"} for r in rows],
        hide_index=True, width="stretch")
    st.plotly_chart(trust_figure(rows), key="models_trust")

st.markdown(f"**{plain(card['name'])}** — {plain(card['architecture'])}, {card.get('parameters', 0):,} parameters, "
            f"labels: {', '.join(card['labels'])} ({card.get('label_set')}).")
if m.get("protocol"):
    st.markdown(f"**Protocol.** {m['protocol']}")
if m.get("per_fold_uar"):
    st.caption("UAR per fold: " + ", ".join(f"{u:.3f}" for u in m["per_fold_uar"]))
data = card.get("data") or {}
if data.get("corpora"):
    st.markdown("**Training data.** " + "; ".join(
        f"{c['corpus']}: {c.get('clips', '?')} clips from {c.get('speakers', '?')} speakers" for c in data["corpora"]) + ".")
    for corpus, pol in (data.get("label_policy") or {}).items():
        if pol.get("lacks"):
            st.caption(f"{corpus} has no {', '.join(pol['lacks'])}: those emotions are learned from the other corpora.")
else:
    st.markdown(f"**Training data.** {data.get('corpus', '?')}: {data.get('clips', '?')} clips from "
                f"{len(data.get('speakers', []))} speakers ({data.get('path', '')}).")
st.markdown(f"**Licence.** {card.get('licence') or 'not stated'}")
training = card.get("training") or {}
if training.get("command"):
    st.markdown("**Reproduce.**")
    st.code(training["command"], language="bash")
if cal:
    st.markdown(f"**Uncertain.** {cal.get('uncertain_rule', '')} (margin {card.get('uncertain_margin', 0):.2f}; "
                f"{cal.get('test_share_uncertain', 0):.0%} of held-out clips are reported as uncertain, and "
                f"{(cal.get('test_accuracy_when_certain') or 0):.0%} of the others are right).")

left, right = st.columns(2)
if (folder / "cv_confusion.png").is_file():
    left.image(str(folder / "cv_confusion.png"), caption="Confusion matrix, summed over the CV test folds")
if (folder / "reliability.png").is_file():
    right.image(str(folder / "reliability.png"), caption="Reliability diagram before and after temperature scaling")

with st.expander("The whole card (card.json)"):
    st.json(card)

st.divider()
st.subheader("Who spoke when: the speaker diarizer")
dcard = diarizer_card()
if not dcard:
    st.warning("The diarizer's card (models/diarization/card.json) is missing: restore it from git.")
else:
    st.caption("The builtin diarizer finds voice activity and overlapped speech with pyannote segmentation-3.0, "
               "embeds 1.5-s windows with CAM++ and clusters them (docs/diarization.md). Both networks ship in "
               "models/diarization/ as safetensors; nothing is downloaded.")
    st.dataframe([{"Network": n, "What": m.get("what", ""), "Licence": m.get("licence", ""),
                   "Trained on": m.get("training_data", "")} for n, m in (dcard.get("models") or {}).items()],
                 hide_index=True, width="stretch", key="models_diarizer_networks")
    dm = dcard.get("metrics") or {}
    names = {"sim": "Simulated conversations (tuned on)", "check": "Simulated conversations (never tuned on)",
             "short": "Short simulated clips, 20-60 s (never tuned on)",
             "real": "Real recordings (AMI, pyannote sample)"}
    if dm.get("sets"):
        st.dataframe([{"Set": names.get(k, k), "Recordings": v["recordings"], "DER": f"{v['der']:.3f}",
                       "missed": f"{v['missed']:.3f}", "false alarm": f"{v['false_alarm']:.3f}",
                       "confusion": f"{v['confusion']:.3f}", "speaker count exact": f"{v['count_exact']:.0%}",
                       "DER, no collar": f"{v['der_collar_0']:.3f}",
                       "DER, true count given": f"{v['der_oracle_count']:.3f}"}
                      for k, v in dm["sets"].items()], hide_index=True, width="stretch", key="models_diarizer_der")
        st.caption("Diarization error rate (lower is better): the share of speech missed, falsely detected or given "
                   "to the wrong speaker, with a 0.25-s forgiveness collar at each turn edge, overlapped speech "
                   "scored, the number of speakers found automatically unless said. "
                   + " ".join(f"**{names.get(k, k)}**: {v['protocol']}." for k, v in dm["sets"].items())
                   + f" Reproduce: `{dm.get('command', 'python bench/diarization_eval.py')}`.")
