"""numpy's huge-page advice is off for a command and back as it was after it, also after an
error (:mod:`sd_depth_texture.core.memory`)."""

from __future__ import annotations

import pytest

from sd_depth_texture.core import memory


def test_huge_page_advice_is_off_inside_and_restored_after() -> None:
    switch = memory._madvise_switch()
    if switch is None:
        pytest.skip("this numpy has no huge-page switch")
    before = switch(True)
    try:
        with memory.without_huge_pages():
            assert switch(False) is False  # setting it returns what it was: off
        assert switch(True) is True  # on again
        with pytest.raises(RuntimeError), memory.without_huge_pages():
            raise RuntimeError("a failing command")
        assert switch(True) is True
    finally:
        switch(before)
