"""Process-level settings of the command line."""

import os
import platform
import subprocess
import sys

import pytest

# In a fresh process: this thread's page faults in the 5th forward + backward of a torch.nn.LSTM, whose
# buffers are freed and allocated again at every step, after `keep_freed_memory()`.
PROBE = """
import resource, torch
from unrolled.cli import keep_freed_memory
took = keep_freed_memory()
lstm, x = torch.nn.LSTM(256, 512, 2), torch.randn(100, 32, 256)
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    lstm(x)[0].sum().backward()
print(took, resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
"""


def _probe(**env) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **env}).stdout.split()  # fmt: skip
    return out[0], int(out[1])


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"), reason="glibc")
def test_a_training_step_reuses_freed_memory_without_page_faults():
    took, faults = _probe()
    assert took == "True" and faults < 3000
    took, faults = _probe(UNROLLED_MALLOC="default")  # malloc left alone: ~30,000 faults a step here
    assert took == "False" and faults > 10000
