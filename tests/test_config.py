"""Settings are read in one place and bad values name their variable."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.core.config import get_config, read_device, read_mode, read_seed

ROOT = Path(__file__).resolve().parents[1]


def test_defaults():
    cfg = get_config({})
    assert cfg.mode == "quick" and cfg.seed == 0
    assert cfg.device_name == ("cuda" if torch.cuda.is_available() else "cpu")
    assert cfg.pick(quick=1, full=2) == 1
    assert get_config({"BOOK_MODE": "full"}).pick(quick=1, full=2) == 2


@pytest.mark.parametrize("value", ["bogus", "QUICKER", "1"])
def test_unknown_mode_names_variable(value):
    with pytest.raises(ValueError, match="BOOK_MODE"):
        read_mode({"BOOK_MODE": value})


@pytest.mark.parametrize("value", ["1.5", "abc", "-3", str(2**32)])
def test_bad_seed_names_variable(value):
    with pytest.raises(ValueError, match="BOOK_SEED"):
        read_seed({"BOOK_SEED": value})


def test_seed_and_mode_parse():
    assert read_seed({"BOOK_SEED": " 42 "}) == 42
    assert read_mode({"BOOK_MODE": "FULL"}) == "full"


@pytest.mark.parametrize("value", ["tpu", "cuda:99" if torch.cuda.is_available() else "cuda"])
def test_unavailable_device_names_variable(value):
    with pytest.raises(ValueError, match="BOOK_DEVICE"):
        read_device({"BOOK_DEVICE": value})


def test_config_script_fails_fast_without_package(tmp_path):
    """The Makefile's first step: plain python on the file, no install needed."""
    script = ROOT / "src" / "helpers" / "core" / "config.py"
    bad = subprocess.run([sys.executable, str(script)], env={"BOOK_MODE": "bogus"},
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "BOOK_MODE" in bad.stderr
    good = subprocess.run([sys.executable, str(script)], env={"BOOK_SEED": "3"},
                          capture_output=True, text=True)
    assert good.returncode == 0 and "BOOK_SEED=3" in good.stdout
