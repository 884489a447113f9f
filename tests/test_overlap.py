"""Overlap from segmentation-3.0's local speakers (ser.diarization.overlap) and its use in stage 4."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ser.diarization.assign import _clean_windows, _overlap_turns
from ser.diarization.base import BuiltinSettings, Embeddings
from ser.diarization.overlap import least_speakers, link_local_speakers, local_votes
from ser.diarization.segmentation import ChunkActivity

F = 1000  # model frames per 10-s chunk: 10 ms each, so chunk frame k is 10-ms frame start/160 + k


def _chunks(spans_per_chunk, starts_s):
    """ChunkActivity from ``{local speaker: [(a_s, b_s), ...]}`` per chunk (seconds inside the chunk)."""
    act = np.zeros((len(starts_s), F, 3), bool)
    for c, spans in enumerate(spans_per_chunk):
        for k, ss in spans.items():
            for a, b in ss:
                act[c, int(a * 100):int(b * 100), k] = True
    return ChunkActivity(np.array([int(s * 16000) for s in starts_s]), act)


def test_local_speakers_are_named_by_their_solo_frames_and_two_of_a_chunk_stay_apart():
    n = 2000  # 20 s
    first = np.full(n, -1)
    first[0:600], first[600:1000], first[1000:2000] = 0, 1, 2
    # chunk 0 (0-10 s): local 0 alone 0-4 s, local 1 alone 7-10 s, both 4-7 s (the clustering says 0 then 1)
    # chunk 1 (10-20 s): local 2 alone throughout; local 0 says 0.3 s only (too little to name)
    ch = _chunks([{0: [(0, 7)], 1: [(4, 10)]}, {2: [(0, 10)], 0: [(2, 2.3)]}], [0.0, 10.0])
    names = link_local_speakers(ch, first, 3, min_alone_s=0.5)
    assert names.tolist() == [[0, 1, -1], [-1, -1, 2]]
    # a chunk whose two local speakers' solo frames are both mostly speaker 0: only one may be 0
    first2 = np.zeros(n, np.int64)
    first2[300:350] = 1  # local 1 (3-4.5 s) is speaker 1 for a third of its solo frames
    ch2 = _chunks([{0: [(0, 3)], 1: [(3, 4.5)]}], [0.0])
    n2 = link_local_speakers(ch2, first2, 2, min_alone_s=0.5, min_share=0.0)
    assert sorted(n2[0, :2].tolist()) == [0, 1]
    # with the share rule on, the local speaker whose frames mostly disagree with its name stays unnamed
    n3 = link_local_speakers(ch2, first2, 2, min_alone_s=0.5, min_share=0.5)
    assert n3[0, 0] == 0 and n3[0, 1] == -1
    votes = local_votes(ch, names, n, 3)
    assert votes[500].tolist() == [1.0, 1.0, 0.0]  # 5 s: both local speakers of chunk 0
    assert votes[100].tolist() == [1.0, 0.0, 0.0] and votes[1500].tolist() == [0.0, 0.0, 1.0]


def test_the_second_speaker_is_the_other_named_local_speaker_not_the_second_closest_centroid():
    n = 1000
    first = np.zeros(n, np.int64)
    first[700:] = 1
    count = np.ones(n, np.float32)
    count[400:700] = 2.0  # segmentation hears two people 4-7 s
    score = np.tile([0.9, 0.2, 0.5], (n, 1))  # the centroids say speaker 2 is second-closest everywhere
    votes = np.zeros((n, 3))
    votes[:700, 0] = 1.0
    votes[400:, 1] = 1.0  # … but the other local speaker heard there is speaker 1
    s = BuiltinSettings()
    by_local = _overlap_turns(score, first, count, 0, s, votes)
    assert [(t.start_s, t.end_s, t.speaker) for t in by_local] == [(4.0, 7.0, "SPEAKER_01")]
    by_centroid = _overlap_turns(score, first, count, 0, s, None)
    assert [(t.start_s, t.end_s, t.speaker) for t in by_centroid] == [(4.0, 7.0, "SPEAKER_02")]
    # where no other named local speaker is heard, the centroid rule is the fallback
    votes[400:550, 1] = 0.0
    fallback = _overlap_turns(score, first, count, 0, s, votes)
    assert [(t.start_s, t.end_s, t.speaker) for t in fallback] == [(4.0, 5.5, "SPEAKER_02"), (5.5, 7.0, "SPEAKER_01")]
    # below the threshold nothing is added
    assert _overlap_turns(score, first, np.full(n, 1.3, np.float32), 0, s, votes) == []


def test_count_evidence_is_the_most_local_speakers_talking_alone_in_one_chunk():
    ch = _chunks([{0: [(0, 3)], 1: [(3, 6)], 2: [(6, 6.5)]}, {0: [(0, 5)], 1: [(4, 10)]}], [0.0, 5.0])
    assert least_speakers(ch, min_alone_s=1.0) == 2  # the third local speaker talks 0.5 s
    assert least_speakers(ch, min_alone_s=0.4) == 3
    assert least_speakers(None) == 0


def test_windows_holding_two_voices_are_left_out_of_the_clustering_unless_most_do():
    n = 1000
    windows = np.array([[a, a + 150] for a in range(0, 850, 75)])
    count = np.ones(n, np.float32)
    count[300:600] = 2.0
    emb = Embeddings(np.array([[0, n]]), windows, np.zeros((len(windows), 4), np.float32), n, 10.0, count)
    s = BuiltinSettings()
    kept = _clean_windows(emb, s)
    mean = np.array([count[a:b].mean() for a, b in windows])
    assert kept.tolist() == np.flatnonzero(mean < s.cluster_max_count).tolist() and 0 < len(kept) < len(windows)
    emb.count[:] = 2.0  # everything overlapped: cluster all rather than nothing
    assert len(_clean_windows(emb, s)) == len(windows)
    assert len(_clean_windows(emb, replace(s, cluster_max_count=float("inf")))) == len(windows)
