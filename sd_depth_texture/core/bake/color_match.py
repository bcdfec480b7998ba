"""Colour matching: fit a view's colours to what earlier views painted where the two overlap.

No bpy. Diffusion views disagree in exposure and white balance; before a view is folded in, a
per-channel gain and offset maps its colours onto the running mean of the views before it, in
view order (the correction is the view's own, so it is fitted once, against what was there when
the view came; the blend that follows is order-independent). The fit is trimmed least squares:
the worst-fitting share of the overlap (other detail, not other exposure) is left out and the
fit repeated. It is made only where the overlap is large enough, and only on the colour
channels (further channels, maps, are left as they are).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

MATCH_MIN_TEXELS = 500  # fewer overlapping texels than this: no correction (too little to fit)
MATCH_SAMPLE = 20_000  # at most this many overlap texels go into the fit (evenly spread)
MATCH_TRIM = 0.25  # the share of worst residuals left out of each refit
MATCH_ROUNDS = 3  # fits (the first on every texel)
GAIN_RANGE = (0.5, 2.0)  # a gain outside this is no exposure difference: clamped
MATCH_CHANNELS = 3  # the colour channels matched


@dataclass
class ColorCorrection:
    """One view's correction: colour' = gain * colour + offset, per channel."""

    gain: np.ndarray  # (3,) float32
    offset: np.ndarray  # (3,) float32
    overlap: int  # overlapping texels the fit saw (before sampling)
    applied: bool

    @classmethod
    def none(cls, overlap: int) -> ColorCorrection:
        return cls(np.ones(MATCH_CHANNELS, np.float32), np.zeros(MATCH_CHANNELS, np.float32),
                   overlap, applied=False)  # fmt: skip

    def apply(self, colors: np.ndarray) -> np.ndarray:
        """``colors`` (..., C) with the correction on the colour channels, clipped to [0, 1]
        (a new array; further channels copied as they are)."""
        corrected = np.array(colors, dtype=np.float32, copy=True)
        if self.applied:
            first = corrected[..., :MATCH_CHANNELS]
            first *= self.gain[: first.shape[-1]]
            first += self.offset[: first.shape[-1]]
            np.clip(first, 0.0, 1.0, out=first)
        return corrected

    def as_record(self) -> dict:
        return {
            "applied": self.applied,
            "gain": [round(float(g), 4) for g in self.gain],
            "offset": [round(float(o), 4) for o in self.offset],
            "overlap_texels": self.overlap,
        }


def fit_gain_offset(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel gain and offset with ``gain * source + offset ~ target``, (M, C) each.

    Trimmed least squares, all channels at once: fit, leave out the MATCH_TRIM worst
    residuals per channel, fit again (MATCH_ROUNDS fits). A channel with no spread keeps gain 1.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    use = np.ones(source.shape, dtype=bool)
    gain = np.ones(source.shape[1])
    offset = np.zeros(source.shape[1])
    for round_ in range(MATCH_ROUNDS):
        count = use.sum(axis=0)
        mean_s = (source * use).sum(axis=0) / count
        mean_t = (target * use).sum(axis=0) / count
        ds, dt = (source - mean_s) * use, (target - mean_t) * use
        variance = (ds * ds).sum(axis=0)
        spread = variance > 1e-8 * count
        gain = np.where(spread, (ds * dt).sum(axis=0) / np.where(spread, variance, 1.0), 1.0)
        gain = np.clip(gain, *GAIN_RANGE)
        offset = mean_t - gain * mean_s
        if round_ + 1 < MATCH_ROUNDS:
            residual = np.abs(target - (gain * source + offset))
            use = residual <= np.quantile(residual, 1.0 - MATCH_TRIM, axis=0)
    return gain.astype(np.float32), offset.astype(np.float32)


def match_view(
    new: np.ndarray, painted: np.ndarray, min_texels: int = MATCH_MIN_TEXELS
) -> ColorCorrection:
    """The correction mapping a view's colours ``new`` (M, C) onto ``painted`` (M, C), the
    state's colours at the same texels (the overlap); none when the overlap is under
    ``min_texels``."""
    overlap = int(new.shape[0])
    if overlap < max(min_texels, 2):
        return ColorCorrection.none(overlap)
    step = max(1, overlap // MATCH_SAMPLE)
    channels = min(MATCH_CHANNELS, new.shape[1])
    gain, offset = fit_gain_offset(new[::step, :channels], painted[::step, :channels])
    log.debug("Colour match over %d texels: gain %s, offset %s", overlap, gain, offset)
    return ColorCorrection(gain=gain, offset=offset, overlap=overlap, applied=True)
