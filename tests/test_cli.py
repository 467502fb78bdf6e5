"""Process-level settings of the command line."""

import platform
import resource
import sys

import pytest
import torch

from unrolled.cli import keep_freed_memory

glibc = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"), reason="glibc's mallopt"
)


def _faults_of_a_64mb_buffer() -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(16 * 2**20).fill_(1.0)  # 64 MiB, freed at once
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc
def test_freed_memory_is_reused_without_page_faults(monkeypatch):
    """Without the setting, glibc maps every block this large afresh: 16,384 page faults each time."""
    assert keep_freed_memory()
    _faults_of_a_64mb_buffer()
    assert _faults_of_a_64mb_buffer() < 1000
    monkeypatch.setenv("UNROLLED_MALLOC", "default")
    assert not keep_freed_memory()
