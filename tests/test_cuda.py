"""On a CUDA device (skipped without one; CI has none): every backend computes, on the device, what the
reference computes — float64 to 1e-10, float32 to 1e-5 (DESIGN rule 3) with TF32 off (with it on,
cuDNN's Elman kernel differed by 3e-3 on an H100)."""

import pytest
import torch
from conftest import assert_close

from unrolled.layers import LAYERS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_backends_agree_on_cuda(name, dtype, tol):
    torch.manual_seed(0)
    layer = LAYERS[name](3, 8, num_layers=2, bidirectional=True, device="cuda", dtype=dtype)
    xs = torch.randn(4, 7, 3, device="cuda", dtype=dtype, requires_grad=True)
    w = torch.linspace(-1, 1, 4 * 7 * 16, device="cuda", dtype=dtype).view(4, 7, 16)
    backends = ["reference", "bptt"] + (["fused"] if layer.fused_kernel else [])
    results = {}
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # forward and backward
        for backend in backends:
            layer.zero_grad(set_to_none=True)
            xs.grad = None
            ys, state = layer(xs, lengths=[7, 5, 2, 1], backend=backend)
            ((w * ys).sum() + state[0].square().sum()).backward()
            results[backend] = [ys, *state, xs.grad, *[p.grad for p in layer.parameters()]]
            assert all(t.device.type == "cuda" for t in results[backend]), backend
    for backend in backends[1:]:
        for i, (got, want) in enumerate(zip(results[backend], results["reference"])):
            assert_close(got, want, tol, f"{backend}, tensor {i}")


def test_recorded_norms_stay_on_the_device():
    layer = LAYERS["lstm"](3, 8, device="cuda")
    layer.record_grad_norms = True
    ys, _ = layer(torch.randn(2, 5, 3, device="cuda"), backend="bptt")
    ys.sum().backward()
    assert layer.grad_norms[0][0].device.type == "cuda" and layer.grad_norms[0][0].shape == (5,)


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
def test_fused_backend_flattens_the_weights_once(name, recwarn, tmp_path):
    """torch.nn's layout of the weights in one buffer: no copy of them at every call (cuDNN warns when it must)."""
    layer = LAYERS[name](3, 8, num_layers=2, bidirectional=True).cuda()
    params = list(layer.parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    for _ in range(2):
        layer(torch.randn(2, 5, 3, device="cuda"), backend="fused")[0].sum().backward()
        opt.step()
    assert len({p.untyped_storage().data_ptr() for p in layer.parameters()}) == 1
    assert [id(p) for p in layer.parameters()] == [id(p) for p in params]
    assert not [w for w in recwarn if "contiguous chunk" in str(w.message)]
    from safetensors.torch import save_model

    save_model(layer, str(tmp_path / "w.safetensors"))  # a checkpoint still saves the weights


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_bptt_peak_memory_is_not_more_than_reference_on_cuda(name):
    """As on the CPU (test_engine.py), at the character model's size, read by `torch.cuda.max_memory_allocated`
    (the bias gradients as sums over 3,200 rows once held a buffer as large as ∂XP there: the LSTM's peak was
    119 MB against the reference's 102)."""
    from unrolled.bench import peak_memory_mb

    torch.manual_seed(0)
    layer = LAYERS[name](512, 512, num_layers=2, device="cuda")
    xs = torch.randn(32, 100, 512, device="cuda", requires_grad=True)

    def step(backend):
        layer.zero_grad(set_to_none=True)
        xs.grad = None
        layer(xs, backend=backend)[0].square().sum().backward()

    peak = {}
    for backend in ("reference", "bptt"):
        step(backend)  # warm-up: cuBLAS's workspace and the allocator's pools, outside the measurement
        peak[backend] = peak_memory_mb(lambda b=backend: step(b), torch.device("cuda"))
    assert peak["bptt"] <= peak["reference"], peak
