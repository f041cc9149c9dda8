"""The scoreboard: EER over same/different-character pairs (the blog) and AMI of a
clustering (the paper), computed exactly as the sources did. Pure numpy/sklearn."""
from __future__ import annotations

import numpy as np

BUCKETS = ((2, 4), (5, 9), (10, 49), (50, None))  # images per character, the blog's table
ALL_PAIRS_LIMIT = 3000   # up to this many images, every pair is scored
SAMPLED_PAIRS = 10_000   # else this many same and this many different pairs
FAR_POINTS = (0.01, 0.003, 0.001, 0.0003, 0.0001)  # false-accept rates whose thresholds a card keeps


def label_codes(labels) -> np.ndarray:
    """Labels of any type as int64 codes (never a narrow int: 200 characters stay 200)."""
    return np.unique(np.asarray([str(x) for x in labels]), return_inverse=True)[1].astype(np.int64)


def eer(scores: np.ndarray, same: np.ndarray, curves=None) -> tuple[float, float]:
    """Equal error rate and its threshold for similarity `scores` of pairs (`same` = True for
    pairs of one character). Accept when score >= threshold; the crossing of the
    false-accept and false-reject curves is interpolated linearly between thresholds.
    `curves`: `error_curves(scores, same)` when the caller already has them."""
    scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
    if same.all() or not same.any():
        raise ValueError("EER needs both same-character and different-character pairs")
    thresholds, far, frr = curves or error_curves(scores, same)
    diff = frr - far  # increases with the threshold
    equal = np.flatnonzero(diff == 0)
    if len(equal):
        # Every threshold in (t[lo-1], t[hi]] gives these equal rates (a separable set: zero
        # errors over the whole gap): take the middle, not the strictest end.
        lo, hi = equal[0], equal[-1]
        return float(far[lo]), float((thresholds[lo - 1] + thresholds[hi]) / 2 if lo > 0 else thresholds[lo])
    k = int(np.searchsorted(diff, 0.0))
    if k == 0:
        return float(far[0]), float(thresholds[0])
    if k == len(diff):
        return float(frr[-1]), float(thresholds[-1])
    a, b = diff[k - 1], diff[k]
    w = 0.0 if b == a else -a / (b - a)
    rate = far[k - 1] + w * (far[k] - far[k - 1])
    return float(rate), float(thresholds[k - 1] + w * (thresholds[k] - thresholds[k - 1]))


def error_curves(scores: np.ndarray, same: np.ndarray, weights: np.ndarray | None = None):
    """(thresholds ascending, FAR, FRR) at every distinct score (plus one above the maximum).
    `weights`: each pair's weight (default: all equal), e.g. so that every source counts alike."""
    scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
    weights = np.ones(len(scores)) if weights is None else np.asarray(weights, np.float64)
    thresholds = np.unique(scores)
    thresholds = np.append(thresholds, np.nextafter(thresholds[-1], np.inf))

    def share_below(mask):  # weighted share of these pairs scoring below each threshold
        order = np.argsort(scores[mask], kind="stable")
        sorted_scores, cumulative = scores[mask][order], np.concatenate([[0.0], np.cumsum(weights[mask][order])])
        return cumulative[np.searchsorted(sorted_scores, thresholds, side="left")] / cumulative[-1]

    return thresholds, 1 - share_below(~same), share_below(same)  # FAR: impostors at/above t; FRR: genuine below


def threshold_at_far(scores: np.ndarray, same: np.ndarray, far_target: float, curves=None) -> float:
    """The lowest similarity threshold whose false-accept rate is at most `far_target`.

    `sort --known` compares each picture with every reference: with many references, the
    EER point accepts some impostor far too often, so it uses a low-FAR point instead."""
    thresholds, far, _ = curves or error_curves(scores, same)
    return float(thresholds[np.argmax(far <= far_target + 1e-12)])  # 1 - 99/100 is not exactly 0.01


def sample_pairs(labels, seed: int = 0, limit: int = ALL_PAIRS_LIMIT, n_pairs: int = SAMPLED_PAIRS):
    """Index pairs (i, j), i != j, and whether they show one character.

    All unordered pairs when there are at most `limit` images; else `n_pairs` same and
    `n_pairs` different pairs drawn with a fixed seed (with replacement, never self-pairs)."""
    codes = label_codes(labels)
    n = len(codes)
    if n <= limit:
        i, j = np.triu_indices(n, k=1)
        return i, j, codes[i] == codes[j]
    rng = np.random.default_rng(seed)
    by_label = {}
    for idx, c in enumerate(codes):
        by_label.setdefault(int(c), []).append(idx)
    groups = [np.array(v) for v in by_label.values() if len(v) >= 2]
    if not groups or len(by_label) < 2:
        raise ValueError("EER needs at least one character with two images and two characters")
    sizes = np.array([len(g) * (len(g) - 1) for g in groups], np.float64)
    picks = rng.choice(len(groups), size=n_pairs, p=sizes / sizes.sum())  # uniform over same pairs
    si, sj = [], []
    for g in picks:
        a, b = rng.choice(groups[g], size=2, replace=False)
        si.append(a), sj.append(b)
    di, dj = [], []
    while len(di) < n_pairs:
        a, b = rng.integers(0, n, size=(2, 2 * n_pairs))
        keep = codes[a] != codes[b]
        di.extend(a[keep].tolist()), dj.extend(b[keep].tolist())
    i = np.concatenate([si, di[:n_pairs]]).astype(np.int64)
    j = np.concatenate([sj, dj[:n_pairs]]).astype(np.int64)
    return i, j, np.concatenate([np.ones(n_pairs, bool), np.zeros(n_pairs, bool)])


def source_of(label: str) -> str:
    """The source part of a `SOURCE/CHARACTER` label ('' for a bare character name)."""
    return str(label).rsplit("/", 1)[0] if "/" in str(label) else ""


def within_pairs(labels, groups, seed: int = 0):
    """Pairs whose two images share a group (a source): each group's pairs as `sample_pairs`
    draws them, pooled. Pairs from two different games are easy (house style, frame), so
    these are the honest pairs to score and to calibrate thresholds on. Returns (i, j, same)."""
    labels, groups = np.asarray([str(x) for x in labels]), np.asarray([str(g) for g in groups])
    parts = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        if len(set(labels[members])) < 2:
            continue  # one character: no different pair inside this group
        try:
            i, j, same = sample_pairs(labels[members], seed)
        except ValueError:
            continue
        parts.append((members[i], members[j], same))
    if not parts:
        raise ValueError("within-group EER needs a group with two characters")
    return tuple(np.concatenate(x) for x in zip(*parts))


def group_weights(i: np.ndarray, same: np.ndarray, groups) -> np.ndarray:
    """Pair weights under which every group's same-character pairs weigh the same in all, and
    so do its different-character pairs: one large source (3,000 fan-art faces) would
    otherwise decide the EER and the thresholds alone."""
    g = np.unique(np.asarray([str(x) for x in groups]), return_inverse=True)[1][i]
    key = g * 2 + same
    counts = np.bincount(key, minlength=key.max() + 1)
    return 1.0 / counts[key]


def scored_pairs(vectors: np.ndarray, labels, seed: int = 0, groups=None):
    """The evaluation pairs, drawn and scored once: (cosine scores, same, weights, group of each
    pair). With `groups`: only pairs inside one group, weighted so every group counts the same
    (`group_weights`); without: weights and groups are None. Memory stays O(n^2) floats for
    all pairs and O(chunk x dim) for sampled ones, never pairs x dim."""
    if groups is None:
        i, j, same = sample_pairs(labels, seed)
        weights = pair_group = None
    else:
        i, j, same = within_pairs(labels, groups, seed)
        weights, pair_group = group_weights(i, same, groups), np.asarray([str(g) for g in groups])[i]
    v = np.asarray(vectors, np.float32)
    if len(v) <= ALL_PAIRS_LIMIT and groups is None:
        return (v @ v.T)[i, j], same, weights, pair_group
    scores = np.empty(len(i), np.float32)
    for start in range(0, len(i), 4096):
        a, b = i[start:start + 4096], j[start:start + 4096]
        scores[start:start + 4096] = np.einsum("ij,ij->i", v[a], v[b])
    return scores, same, weights, pair_group


def pair_scores(vectors: np.ndarray, labels, seed: int = 0, groups=None):
    """Cosine similarity of the evaluation pairs: (scores, same); see `scored_pairs`."""
    return scored_pairs(vectors, labels, seed, groups)[:2]


def embedding_eer(vectors: np.ndarray, labels, seed: int = 0, groups=None) -> dict:
    """EER overall and per character-frequency bucket: {'eer', 'threshold', 'threshold_far1'
    (1% false accepts), 'pairs', 'buckets'}. With `groups` (each image's source), only pairs
    inside one group count, buckets included, and every group weighs the same
    (`group_weights`).

    A bucket's EER uses only the images of characters in that bucket."""
    labels = np.asarray([str(x) for x in labels])
    groups = None if groups is None else np.asarray([str(g) for g in groups])
    scores, same, weights, _ = scored_pairs(vectors, labels, seed, groups)
    curves = error_curves(scores, same, weights) if same.any() and not same.all() else None  # sorted once, used twice
    rate, threshold = eer(scores, same, curves)
    result = {"eer": rate, "threshold": threshold, "threshold_far1": threshold_at_far(scores, same, 0.01, curves),
              "far_thresholds": {str(f): threshold_at_far(scores, same, f, curves) for f in FAR_POINTS},
              "pairs": int(len(same)), "buckets": {}}
    values, counts = np.unique(labels, return_counts=True)
    per_label = dict(zip(values, counts))
    for low, high in BUCKETS:
        name = f"{low}-{high}" if high else f"{low}+"
        members = np.array([low <= per_label[x] and (high is None or per_label[x] <= high) for x in labels])
        n_chars = len({x for x in labels[members]})
        entry = {"characters": n_chars, "images": int(members.sum()), "eer": None}
        if n_chars >= 2:
            try:
                s, m, w, _ = scored_pairs(vectors[members], labels[members], seed,
                                          None if groups is None else groups[members])
                entry["eer"] = eer(s, m, error_curves(s, m, w))[0]
            except ValueError:  # no group holds two characters of this bucket
                pass
        result["buckets"][name] = entry
    return result


def source_scores(vectors: np.ndarray, labels, seed: int = 0) -> dict:
    """The honest headline for `SOURCE/CHARACTER` labels: EER over pairs inside one source,
    every source weighing the same (with its thresholds), each source's own EER, and their
    mean; beside it the all-pairs EER, which pairs of two different games flatter."""
    labels = [str(x) for x in labels]
    groups = [source_of(x) for x in labels]
    everything = embedding_eer(vectors, labels, seed)
    result = {"all_pairs_eer": everything["eer"], "per_source": {}}
    if len(set(groups)) < 2:  # bare character names, or one source: its pairs are all pairs
        return {**everything, **result, "within_source": False}
    try:
        result.update(embedding_eer(vectors, labels, seed, groups))
    except ValueError:
        return {**everything, **result, "within_source": False}
    result["within_source"] = True
    scores, same, _, pair_group = scored_pairs(vectors, labels, seed, groups)  # each source's own pairs
    lab, grp = np.asarray(labels), np.asarray(groups)
    for g in sorted(set(groups)):
        m = pair_group == g
        if same[m].any() and not same[m].all():
            result["per_source"][g] = {"eer": eer(scores[m], same[m])[0], "characters": len(set(lab[grp == g])),
                                       "images": int((grp == g).sum())}
    rates = [x["eer"] for x in result["per_source"].values()]
    result["mean_source_eer"] = float(np.mean(rates)) if rates else None
    return result


def clustering_scores(true_labels, predicted: np.ndarray) -> dict:
    """AMI (noise counted as one extra label, as the paper's HDBSCAN scoring), ARI, noise share,
    number of clusters."""
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    truth = label_codes(true_labels)
    predicted = np.asarray(predicted)
    return {"ami": float(adjusted_mutual_info_score(truth, predicted)),
            "ari": float(adjusted_rand_score(truth, predicted)),
            "noise": float(np.mean(predicted == -1)) if len(predicted) else 0.0,
            "clusters": int(len(set(predicted.tolist()) - {-1}))}
