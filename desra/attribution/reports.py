"""Attribution reports: accuracy by group, seed-triplet accuracy, R(A, B) matrix and t-SNE plots.

All functions take scores (N, K) (higher = more likely), true class indices (N,) and the zoo
members; plots are written with matplotlib's Agg backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from desra.attribution.dataset import ZooMember

GROUPS = ("all", "x2", "x4", "l1", "gan", "published")
"""Row order of the accuracy-by-group tables (architectures are appended; empty groups are left out)."""


def _in_group(member: ZooMember, group: str) -> bool:
    return (
        group == "all"
        or group == f"x{member.scale}"
        or group == member.loss
        or group == member.architecture
        or (group == "published" and member.published)
    )


def accuracy_by_group(scores: np.ndarray, truth: np.ndarray, members: Sequence[ZooMember]) -> dict[str, dict[str, float]]:
    """Attribution accuracy over all K classes, per group of TRUE models: {group: {'accuracy', 'n'}}."""
    predicted = np.asarray(scores).argmax(axis=1)
    groups = list(GROUPS) + sorted({m.architecture for m in members})
    table = {}
    for group in groups:
        rows = np.array([_in_group(members[t], group) for t in truth], dtype=bool)
        if rows.any():
            table[group] = {"accuracy": float(np.mean(predicted[rows] == truth[rows])), "n": int(rows.sum())}
    return table


def triplet_accuracy(scores: np.ndarray, truth: np.ndarray, members: Sequence[ZooMember]) -> dict[str, dict[str, float]]:
    """Seed-only attribution: argmax restricted to the models that differ from the true one only by seed, per triplet with >= 2 seeds."""
    scores = np.asarray(scores)
    by_triplet: dict[str, list[int]] = {}
    for k, member in enumerate(members):
        by_triplet.setdefault(member.triplet, []).append(k)
    table = {}
    for key, ks in sorted(by_triplet.items()):
        if len(ks) < 2:
            continue
        rows = np.isin(truth, ks)
        if rows.any():
            restricted = np.asarray(ks)[scores[np.ix_(rows, ks)].argmax(axis=1)]
            table[key] = {"accuracy": float(np.mean(restricted == truth[rows])), "n": int(rows.sum()), "chance": 1 / len(ks)}
    return table


def vote_groups(scores: np.ndarray, keys: Sequence[str], size: int = 10) -> tuple[np.ndarray, list[str]]:
    """Average ``scores`` (N, K) over consecutive chunks of up to ``size`` rows sharing a key: (M, K) and the M keys."""
    voted, voted_keys = [], []
    keys = list(keys)
    start = 0
    while start < len(keys):
        end = start
        while end < len(keys) and keys[end] == keys[start] and end - start < size:
            end += 1
        voted.append(np.asarray(scores[start:end]).mean(axis=0))
        voted_keys.append(keys[start])
        start = end
    return np.stack(voted), voted_keys


def r_matrix(embeddings: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """R(A, B) = (intra(A) + intra(B)) / (2 inter(A, B)) from (N, D) embeddings and (N,) labels: (K, K) float64; 1 = indistinguishable, -> 0 separated."""
    from scipy.spatial.distance import cdist

    embeddings = np.asarray(embeddings, np.float64)
    members = [embeddings[labels == k] for k in range(classes)]
    mean_dist = np.zeros((classes, classes))
    for a in range(classes):
        for b in range(a, classes):
            d = cdist(members[a], members[b])
            if a == b:
                n = len(members[a])
                value = d.sum() / max(n * (n - 1), 1)  # exclude the zero self-distances
            else:
                value = d.mean()
            mean_dist[a, b] = mean_dist[b, a] = value
    intra = np.diag(mean_dist)
    return (intra[:, None] + intra[None, :]) / (2 * mean_dist)


def mean_r(r: np.ndarray, members: Sequence[ZooMember], group: str) -> float:
    """Mean off-diagonal R(A, B) over pairs where both A and B are in ``group`` (lower = more distinctive)."""
    ks = [k for k, m in enumerate(members) if _in_group(m, group)]
    values = [r[a, b] for a in ks for b in ks if a != b]
    return float(np.mean(values)) if values else float("nan")


def plot_r_matrix(r: np.ndarray, names: Sequence[str], path: Path, title: str = "R(A, B) on test crops") -> Path:
    """Heat map of the (K, K) R matrix with model names on both axes, saved as PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(names)
    fig, ax = plt.subplots(figsize=(3 + 0.38 * k, 2.5 + 0.38 * k))
    image = ax.imshow(r, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(k), names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, label="R (1 = indistinguishable)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_tsne(embeddings: np.ndarray, labels: np.ndarray, members: Sequence[ZooMember], path: Path, *, seed: int = 0) -> Path:
    """2-D t-SNE (scikit-learn) of (N, D) embeddings coloured by model (marker: x2 circle / x4 triangle, filled = GAN), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(5, (len(embeddings) - 1) // 4)))
    points = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(np.asarray(embeddings, np.float64))
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(8, 6))
    for k, member in enumerate(members):
        rows = labels == k
        marker = "o" if member.scale == 2 else "^"
        colour = cmap(k % 20)
        face = colour if member.loss == "gan" else "none"
        ax.scatter(points[rows, 0], points[rows, 1], s=14, marker=marker, facecolors=face, edgecolors=colour, label=member.name, linewidths=0.8)
    ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title("t-SNE of classifier embeddings (test crops); o x2, ^ x4, filled = GAN", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
