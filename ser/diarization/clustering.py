"""Clustering speaker-embedding windows into speakers, honouring exact and min–max counts.

``cluster_windows`` is what ``ser.diarization`` calls: average-linkage clustering cut at a
cosine similarity (the default) or spectral clustering with the eigengap count, then
merging of clusters that carry too little speech (or, spectral, are too similar).

With at least ``refine_min_speech_s`` of speech, average linkage runs on a *refined*
similarity instead of the plain cosine: each window keeps only its most similar
``refine_share`` of the others (its neighbourhood), and two windows count as alike also
when their neighbourhoods are alike (the cosine between their rows of the pruned affinity,
mixed half and half with their own cosine). A speaker whose acted moods form two groups is
held together by the windows both groups are near; two calm voices that are close on
average but never share neighbours come apart (docs/diarization.md has the figures).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _spectral(vecs: np.ndarray, k: int, prune: float, eig: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Spectral clustering of unit vectors into ``k`` clusters (k-means on the first k eigenvectors)."""
    from sklearn.cluster import KMeans
    n = len(vecs)
    k = max(1, min(k, n))
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    if eig is None or eig[1].shape[1] < k:
        eig = _laplacian_eig(vecs, prune, k)
    U = eig[1][:, :k]
    U = U / (np.linalg.norm(U, axis=1, keepdims=True) + 1e-9)
    return KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(U).astype(np.int64)


def _eigengap_k(vals: np.ndarray, lo: int, hi: int) -> int:
    """The count in [lo, hi] after which the Laplacian's eigenvalues jump the most."""
    hi = min(hi, len(vals) - 1)
    lo = min(lo, hi)
    if hi < 1:
        return 1
    gaps = np.diff(vals[: hi + 1])  # gaps[i] = vals[i+1] - vals[i]  → i+1 clusters
    return int(np.argmax(gaps[lo - 1: hi]) + lo)


def _merge_clusters(vecs: np.ndarray, labels: np.ndarray, threshold: float, lo: int, hi: int, *,
                    min_windows: float, weights: np.ndarray | None = None) -> np.ndarray:
    """Merge the two closest clusters (centroid cosine) while they are more similar than ``threshold``,
    while there are more than ``hi``, or while one is smaller than ``min_windows`` (in windows, or in
    the sum of ``weights`` when given); never below ``lo``."""
    labels = labels.copy()
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, float)
    while True:
        ids = np.unique(labels)
        if len(ids) <= max(lo, 1):
            break
        C = np.stack([vecs[labels == c].mean(0) for c in ids])
        C /= np.linalg.norm(C, axis=1, keepdims=True) + 1e-9
        S = C @ C.T
        np.fill_diagonal(S, -np.inf)
        sizes = np.array([w[labels == c].sum() for c in ids])
        i, j = np.unravel_index(np.argmax(S), S.shape)
        if S[i, j] < threshold and len(ids) <= hi:
            small = np.flatnonzero(sizes < min_windows)
            if len(small) == 0:
                break
            i = small[np.argmin(sizes[small])]
            j = int(np.argmax(S[i]))
        labels[labels == ids[max(i, j)]] = ids[min(i, j)]
    _, labels = np.unique(labels, return_inverse=True)
    return labels.astype(np.int64)


def _laplacian_eig(vecs: np.ndarray, prune: float, m: int):
    """The ``m`` smallest eigenpairs of the normalised Laplacian of the pruned cosine affinity."""
    from scipy.linalg import eigh
    n = len(vecs)
    A = vecs @ vecs.T
    np.fill_diagonal(A, 0.0)
    keep = max(1, int(np.ceil(prune * n)))
    if keep < n:  # row-wise pruning: keep the strongest affinities, then symmetrise
        thr = np.partition(A, n - keep, axis=1)[:, n - keep][:, None]
        A = np.where(A >= thr, A, 0.0)
    A = np.maximum(A, A.T)
    A = np.clip(A, 0.0, None)
    d = A.sum(1)
    d[d == 0] = 1.0
    dm = 1.0 / np.sqrt(d)
    L = np.eye(n) - dm[:, None] * A * dm[None, :]
    m = max(1, min(m, n))
    return eigh(L, subset_by_index=[0, m - 1], driver="evr")


def refined_similarity(vecs: np.ndarray, share: float, mix: float) -> np.ndarray:
    """Window-to-window similarity: ``mix`` × the cosine between the windows' neighbourhood
    profiles + (1 − ``mix``) × their own cosine. A profile is a row of the cosine affinity that
    keeps each window's ``share`` most similar windows (negatives cut to 0), symmetrised."""
    X = np.asarray(vecs, dtype=np.float32)
    S = X @ X.T
    n = len(S)
    keep = min(n, max(2, int(np.ceil(share * n))))
    thr = np.partition(S, n - keep, axis=1)[:, n - keep][:, None]
    A = np.where(S >= thr, np.maximum(S, 0.0), 0.0)
    A = np.maximum(A, A.T)
    A /= np.linalg.norm(A, axis=1, keepdims=True) + 1e-9
    out = A @ A.T
    out *= mix
    out += (1.0 - mix) * S
    return out


def _ahc(vecs: np.ndarray, threshold: float, k: int | None = None, *,
         similarity: np.ndarray | None = None) -> np.ndarray:
    """Average-linkage clustering on cosine similarity (or on a given ``similarity`` matrix): cut
    where clusters are less similar than ``threshold`` (or into exactly ``k`` clusters)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    if similarity is None:
        Z = linkage(vecs, method="average", metric="cosine")
    else:
        from scipy.spatial.distance import squareform
        D = np.clip(1.0 - similarity, 0.0, None).astype(np.float64)
        D = (D + D.T) / 2
        np.fill_diagonal(D, 0.0)
        Z = linkage(squareform(D, checks=False), method="average")
    if k is not None:
        lab = fcluster(Z, t=k, criterion="maxclust")
    else:
        lab = fcluster(Z, t=1.0 - threshold, criterion="distance")
    return (np.unique(lab, return_inverse=True)[1]).astype(np.int64)


def cluster_windows(V: np.ndarray, s: Any, exact: int | None, lo: int, hi: int,
                    seconds: np.ndarray | None = None) -> np.ndarray:
    """A speaker label per window embedding; exactly ``exact`` speakers, else between ``lo`` and ``hi``.
    ``s``: the clustering fields of ``ser.diarization.BuiltinSettings``.
    ``seconds``: the speech each window stands for (default ``hop_s``), for the minimum talk time."""
    n = len(V)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    seconds = np.full(n, s.hop_s) if seconds is None else seconds
    # a speaker talks at least min_cluster_s, or min_cluster_share of a short recording's speech
    kw = {"min_windows": min(s.min_cluster_s, s.min_cluster_share * float(seconds.sum())), "weights": seconds}
    if s.clustering == "ahc":
        thr, sim = s.merge_similarity, None
        if float(seconds.sum()) >= s.refine_min_speech_s:
            if s.refine_centre > 0:  # take out part of what all of this recording's voices share (room, channel)
                V = V - s.refine_centre * V.mean(0)
                V = V / (np.linalg.norm(V, axis=1, keepdims=True) + 1e-9)
            thr, sim = s.refined_similarity, refined_similarity(V, s.refine_share, s.refine_mix)
        if exact is not None:
            return _ahc(V, thr, min(exact, n), similarity=sim)
        labels = _ahc(V, thr, similarity=sim)
        k = int(labels.max()) + 1
        if k < lo or k > hi:
            labels = _ahc(V, thr, int(np.clip(k, lo, min(hi, n))), similarity=sim)
        return _merge_clusters(V, labels, 1.01, lo, hi, **kw)
    if exact is not None:
        return _spectral(V, exact, s.prune)
    hi2 = max(hi, 2)
    eig = _laplacian_eig(V, s.prune, hi2 + s.overcluster + 1)
    k0 = _eigengap_k(eig[0], max(lo, 2), hi2)
    k0 = min(n, max(k0 + s.overcluster, 2))
    labels = _spectral(V, k0, s.prune, eig)
    return _merge_clusters(V, labels, s.merge_similarity, lo, hi, **kw)
