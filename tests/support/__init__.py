"""Helpers the tests share: paths, fingerprints, Cycles renders, installs, LDM keys."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SPOT_COW = SHARED / "assets" / "spot_cow"
