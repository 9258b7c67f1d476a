"""The training-health monitor: is this run going wrong, and what should its user do about it.

Three detectors, each a small pure function over per-epoch statistics (testable without training):

    d_winning   D(x) near 1 and D(G(z)) near 0 over a window of epochs while G's loss climbs:
                the discriminator has memorised the data (small data sets do this first)
    collapse    the fixed-noise grid is far less diverse than a fixed batch of real images,
                in pixels AND in D's penultimate features (both: a grid of one face in many
                colours is not a collapse in features, a grid of noise is not one in pixels)
    diverging   the losses past float32's sigmoid saturation, or weights past a tenth of
                checkpoints.WEIGHT_LIMIT (the NaN guard's), before they become NaN

`Monitor` feeds them at the end of each epoch: the epoch's metrics row (what the step already
returns, summed by lifecycle.EpochMeter) every epoch, and at the sample cadence the cheap
extras (the grid's images, one D forward of them and of the real batch, the largest weight).
What to do on a finding (--on-collapse warn|stop|rollback) is on_collapse.py's, beside this module.
No TensorFlow at module level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from dcgan_cli.errors import DcganError


class TrainingStopped(DcganError):
    """--on-collapse stopped the run: its checkpoint is kept, the message says what happened and how to go on."""


# -- thresholds (calibrated on real runs: docs/training.md, "The health monitor") ---------------------
# D winning: over the last WINDOW_EPOCHS epochs spanning at least WINDOW_STEPS steps (a small data set's
# epoch may be one step), the step-weighted mean D(x) >= D_REAL_HIGH and D(G(z)) <= D_FAKE_LOW, and G's
# loss higher in the window's second half than in its first. Healthy runs here stay at D(x) 0.60-0.90 and
# D(G(z)) 0.21-0.50; a memorising D reaches 0.99 / 0.02.
WINDOW_EPOCHS = 3
WINDOW_STEPS = 60
D_REAL_HIGH = 0.9
D_FAKE_LOW = 0.1
# Under the hinge loss D's gradient stops at the margin (logit +-1), so its D(x) stays near sigmoid(1): there
# D has won when, on average, the real images are past the margin and the fakes below it (its loss is then 0).
HINGE_ZONE = (float(1 / (1 + np.exp(-1.0))), float(1 / (1 + np.exp(1.0))))  # (0.731, 0.269)


def winning_zone(loss: str) -> tuple[float, float]:
    """(D(x) at or over, D(G(z)) at or under): where D is winning under `loss` (TrainConfig.loss)."""
    return HINGE_ZONE if loss == "hinge" else (D_REAL_HIGH, D_FAKE_LOW)
# Collapse: the grid's mean pairwise distance under COLLAPSE_RATIO of the real batch's, in pixels and
# in D's features, once the generator has had COLLAPSE_WARMUP_STEPS steps (an untrained generator's
# images are all alike: that is its start, not a collapse).
COLLAPSE_RATIO = 0.25
COLLAPSE_WARMUP_STEPS = 100
# Diverging: a mean loss over 17 means logits beyond |17|, where float32's sigmoid is exactly 0 or 1
# (1 - sigmoid(17) = 4e-8 < float32's half-epsilon 6e-8): D's outputs have blown up. Weights: a tenth of
# the limit past which lifecycle refuses to checkpoint them.
DIVERGE_LOSS = 17.0
DIVERGE_WEIGHT_SHARE = 0.1
# Rollback: the rates are halved (both, so the G/D ratio the preset was tuned at stays); a second
# finding that would roll back to the same checkpoint again stops the run instead.
ROLLBACK_FACTOR = 0.5
ROLLBACKS_PER_CHECKPOINT = 1
# Epoch rows kept: more than any window needs (an epoch has at least one step).
KEEP_ROWS = 4 * WINDOW_STEPS


@dataclass(frozen=True)
class Finding:
    """One thing going wrong: which detector (`kind`), what it saw, what to do."""

    kind: str
    what: str
    advice: str

    def line(self, epoch: int, step: int) -> str:
        return f"Health: {self.what} (epoch {epoch}, step {step}); {self.advice}"

    def record(self) -> dict:
        return {"kind": self.kind, "what": self.what, "advice": self.advice}


def window(rows: Sequence[dict], epochs: int = WINDOW_EPOCHS,
           steps: int = WINDOW_STEPS) -> tuple[list[dict], list[int]]:
    """The newest rows covering at least `epochs` rows and `steps` steps, and each one's steps; ([], []) when
    the run is not that far yet."""
    ends = [r["step"] for r in rows]
    for start in range(len(rows) - epochs, -1, -1):
        first = ends[start - 1] if start > 0 else 0
        if ends[-1] - first >= steps:
            return list(rows[start:]), list(np.diff([first] + ends[start:]))
    return [], []


def _mean(rows: Sequence[dict], steps: Sequence[int], key: str) -> float:
    """The step-weighted mean of `key` over epoch rows (an epoch's row is the mean over its steps)."""
    return float(np.average([r[key] for r in rows], weights=np.maximum(steps, 1)))


def d_winning(rows: Sequence[dict], zone: tuple[float, float] = (D_REAL_HIGH, D_FAKE_LOW)) -> str | None:
    """What shows the discriminator winning over the newest window of epoch rows, or None (`zone`:
    `winning_zone` of the run's loss)."""
    w, steps = window(rows)
    if not w:
        return None
    d_real, d_fake = _mean(w, steps, "d_real"), _mean(w, steps, "d_fake")
    half = max(1, len(w) // 2)
    g_before, g_after = _mean(w[:half], steps[:half], "g_loss"), _mean(w[half:], steps[half:], "g_loss")
    if d_real >= zone[0] and d_fake <= zone[1] and g_after > g_before:
        return (f"the discriminator is winning: D(x) {d_real:.3f}, D(G(z)) {d_fake:.3f} over steps "
                f"{w[-1]['step'] - sum(steps) + 1}-{w[-1]['step']}, G loss climbing {g_before:.2f} -> {g_after:.2f}")
    return None


def collapse(pixel_ratio: float, feature_ratio: float, step: int) -> str | None:
    """What shows mode collapse, from the grid's diversity as a share of the real batch's, or None."""
    if step < COLLAPSE_WARMUP_STEPS:
        return None
    if pixel_ratio < COLLAPSE_RATIO and feature_ratio < COLLAPSE_RATIO:
        return (f"mode collapse: the sample grid's diversity is {pixel_ratio:.2f}x the real images' in pixels "
                f"and {feature_ratio:.2f}x in D's features (under {COLLAPSE_RATIO})")
    return None


def diverging(row: dict, largest_weight: tuple[str, float] | None, weight_limit: float) -> str | None:
    """What shows training diverging, from the newest epoch row (and the largest weight when measured), or None."""
    worst = max(("d_loss", "g_loss"), key=lambda k: abs(row[k]))
    if not np.isfinite(row[worst]) or abs(row[worst]) > DIVERGE_LOSS:
        return (f"training is diverging: mean {worst.replace('_', ' ')} {row[worst]:.3g} (over {DIVERGE_LOSS:g}: "
                f"D's outputs are saturated at 0 or 1)")
    if largest_weight is not None and largest_weight[1] > DIVERGE_WEIGHT_SHARE * weight_limit:
        return (f"training is diverging: {largest_weight[0]} reached |w| = {largest_weight[1]:.3g} "
                f"(over {DIVERGE_WEIGHT_SHARE * weight_limit:g}; at {weight_limit:g} it cannot be checkpointed)")
    return None


def diversity(x: np.ndarray) -> float:
    """The mean Euclidean distance between the rows of `x` (N, ...) over all N(N-1)/2 pairs (0 for N < 2)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    if len(x) < 2:
        return 0.0
    sq = np.sum(x * x, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    iu = np.triu_indices(len(x), k=1)
    return float(np.mean(np.sqrt(d2[iu])))


def advice(kind: str, lr_g: float, lr_d: float, resume: str, healthy: str | None) -> str:
    """What to do about a finding of `kind`: the knob to turn, and the exact command that continues the run."""
    lower = f"--lr-g {lr_g * ROLLBACK_FACTOR:.3g} --lr-d {lr_d * ROLLBACK_FACTOR:.3g}"
    fix = {"d_winning": f"try `--augment ada` (a new run) or a lower --lr-d; continue with: {resume} "
                        f"--lr-d {lr_d * ROLLBACK_FACTOR:.3g}",
           "collapse": f"try a lower --lr-g or `--augment ada` (a new run); continue with: {resume} "
                       f"--lr-g {lr_g * ROLLBACK_FACTOR:.3g}",
           "diverging": f"lower both rates; continue with: {resume} {lower}"}[kind]
    back = (f"; the last healthy checkpoint is {healthy} (add --on-collapse rollback to go back to it by itself)"
            if healthy else "")
    return fix + back


@dataclass
class Monitor:
    """The per-run state of the detectors: the epoch rows so far, which findings are active, the real reference.

    `features(images_u8)` -> (N, F) D's penultimate features; `real` the fixed real batch (uint8).
    A finding is reported once, and again only after its condition cleared.
    """

    real: np.ndarray
    features: Callable[[np.ndarray], np.ndarray]
    weight_limit: float
    last_healthy: str | None = None  # the newest checkpoint written at a healthy epoch (its path)
    rows: list = field(default_factory=list)
    active: set = field(default_factory=set)
    real_pixels: float = 0.0
    zone: tuple = (D_REAL_HIGH, D_FAKE_LOW)  # winning_zone(the run's loss)

    def __post_init__(self) -> None:
        self.real_pixels = diversity(self.real.astype(np.float32))

    @property
    def healthy(self) -> bool:
        """Whether a checkpoint now may be a rollback's target: no finding active, and the last epoch not itself
        in D's winning zone (the window that confirms a finding lags by a few epochs)."""
        last = self.rows[-1] if self.rows else None
        return not self.active and not (last and last["d_real"] >= self.zone[0] and last["d_fake"] <= self.zone[1])

    def forget_after(self, step: int) -> None:
        """A rollback to `step`: the rows after it did not happen; every finding may fire again."""
        self.rows = [r for r in self.rows if r["step"] <= step]
        self.active.clear()

    def measure(self, images: np.ndarray) -> dict:
        """The grid's diversity against the real batch's: pixels, and D's features of both (one forward each)."""
        fake_feat, real_feat = self.features(images), self.features(self.real)

        def ratio(fake: float, real: float) -> float:  # real images all alike (one image): nothing to fall below
            return fake / real if real > 0 else float("inf")

        return {"pixel_diversity": ratio(diversity(images.astype(np.float32)), self.real_pixels),
                "feature_diversity": ratio(diversity(fake_feat), diversity(real_feat))}

    def examine(self, row: dict, measured: dict | None = None,
                largest_weight: tuple[str, float] | None = None) -> list[tuple[str, str]]:
        """The new findings after the epoch of `row`: [(kind, what)], each kind once until it clears."""
        self.rows = self.rows[-KEEP_ROWS:] + [row]
        seen = {"d_winning": d_winning(self.rows, self.zone),
                "diverging": diverging(row, largest_weight, self.weight_limit)}
        if measured is not None:
            seen["collapse"] = collapse(measured["pixel_diversity"], measured["feature_diversity"], row["step"])
        new = []
        for kind, what in seen.items():
            if what is None:
                self.active.discard(kind)
            elif kind not in self.active:
                self.active.add(kind)
                new.append((kind, what))
        return new
