"""The inference SiLU (world_models.activation): same values as torch's, same contract as an in-place op."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import world_models.activation as activation
from world_models.activation import (
    bias_silu_,
    fast_silu_on,
    fast_silu_status,
    prepared_bias_silu_,
    silu_,
    silu_vector_bits,
    silu_vector_width,
    torch_silu,
)
from world_models.ensemble import EnsembleMLP, hidden_layer

KERNEL_ON = fast_silu_on()
needs_kernel = pytest.mark.skipif(not KERNEL_ON, reason=f"vectorised SiLU not in use here: {fast_silu_status()}")


@pytest.fixture
def torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _exact(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x.double())


@needs_kernel
@pytest.mark.parametrize("size", [1, 7, 8, 9, 1000, 40_003])  # tails shorter than a vector; the threaded path
def test_matches_exact_silu_as_closely_as_torch(size: int) -> None:
    torch.manual_seed(size)
    x = torch.cat([torch.randn(size) * 6, torch.tensor([0.0, -0.0, 1e-30, -1e-30, 87.5, -86.5, 30.0, -30.0])])
    ours = silu_(x.clone()).double()
    exact = _exact(x)
    tolerance = 3e-7 * exact.abs() + 1e-37
    assert ((ours - exact).abs() <= tolerance).all()
    torch_error = (F.silu(x).double() - exact).abs() / exact.abs().clamp_min(1e-30)
    our_error = (ours - exact).abs() / exact.abs().clamp_min(1e-30)
    assert our_error.max() <= 2 * torch_error.max() + 1e-7


@needs_kernel
def test_saturates_beyond_the_exp_range_and_keeps_nan() -> None:
    x = torch.tensor([100.0, 1e6, -100.0, -1e6, float("nan"), float("inf")] + [0.5] * 10)
    out = silu_(x.clone())
    assert out[0] == 100.0 and out[1] == 1e6
    assert out[2].abs() < 1e-30 and out[3].abs() < 1e-30 and out[2] <= 0 and out[3] <= 0
    assert torch.isnan(out[4]) and out[5] == float("inf")
    assert torch.allclose(out[6:], F.silu(torch.full((10,), 0.5)))


@needs_kernel
def test_result_does_not_depend_on_the_thread_count(torch_threads: None) -> None:
    x = torch.randn(5, 97, 200)
    torch.set_num_threads(1)
    one = silu_(x.clone())
    torch.set_num_threads(2)
    two = silu_(x.clone())
    assert torch.equal(one, two)


def test_works_in_place_and_returns_its_input() -> None:
    x = torch.randn(3, 50, 20)
    expected = F.silu(x)
    y = silu_(x)
    assert y is x
    assert torch.allclose(x, expected, rtol=3e-7, atol=1e-7)


def test_non_contiguous_and_other_dtypes_use_torch() -> None:
    base = torch.randn(40, 30)
    view = base.t()
    expected = F.silu(view)
    assert torch.equal(silu_(view), expected)
    doubles = torch.randn(100, dtype=torch.float64)
    assert torch.equal(silu_(doubles.clone()), F.silu(doubles))


def test_a_tensor_that_needs_its_gradient_keeps_autograd_working() -> None:
    w = torch.randn(16, requires_grad=True)
    x = w * 2.0  # requires grad: silu_ must go through torch so backward sees it
    y = silu_(x.clone())
    y.sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_bumps_the_version_so_autograd_refuses_a_stale_saved_tensor() -> None:
    w = torch.randn(64, requires_grad=True)
    x = torch.randn(64)
    y = (x * w).sum()  # saves x for w's gradient
    with torch.no_grad():
        silu_(x)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REHEARSE_FAST_SILU", "0")
    monkeypatch.setattr(activation, "_state", {})
    assert fast_silu_status() == "off (REHEARSE_FAST_SILU=0)"
    x = torch.randn(1000)
    assert torch.equal(silu_(x.clone()), F.silu(x))


def test_a_failed_build_falls_back_to_torch_and_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(activation, "_state", {})
    status = fast_silu_status()
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        assert status.startswith("off (building") and "no-such-compiler" in status
    x = torch.randn(1000)
    assert torch.equal(silu_(x.clone()), F.silu(x))
    assert not list(tmp_path.rglob("*.so*"))  # nothing half-written is left behind


@needs_kernel
@pytest.mark.parametrize("shape", [(1, 3, 5), (5, 97, 200), (3, 7, 1000), (10, 485, 200)])
def test_bias_silu_matches_silu_of_the_biased_product(shape: tuple[int, int, int], torch_threads: None) -> None:
    torch.manual_seed(sum(shape))
    x, bias = torch.randn(*shape) * 4, torch.randn(shape[0], 1, shape[2])
    exact = _exact(x + bias)  # the float32 sum, as the kernel forms it
    results = []
    for threads in (1, 2):  # the threaded path splits rows across groups: same numbers
        torch.set_num_threads(threads)
        results.append(bias_silu_(x.clone(), bias))
    assert torch.equal(results[0], results[1])
    assert ((results[0].double() - exact).abs() <= 3e-7 * exact.abs() + 1e-37).all()


@needs_kernel
@pytest.mark.parametrize("shape", [(1, 1, 7), (1, 1, 15), (3, 5, 24), (2, 9, 203), (10, 485, 200)])
def test_avx512_and_avx2_loops_give_the_same_bits(shape: tuple[int, int, int], torch_threads: None) -> None:
    with silu_vector_width(512) as bits:
        if bits != 512:
            pytest.skip("this CPU has no AVX-512F")
    torch.manual_seed(sum(shape))
    x = torch.cat([torch.randn(*shape) * 8, torch.full((1, shape[1], shape[2]), -86.9)])  # the exp range's edge
    bias = torch.randn(x.shape[0], 1, shape[2])
    results = {}
    for width in (256, 512):
        with silu_vector_width(width) as used:
            assert used == width
            for threads in (1, 2):
                torch.set_num_threads(threads)
                results[width, threads] = (bias_silu_(x.clone(), bias), silu_(x.clone()))
    first = results[256, 1]
    for biased, plain in results.values():
        assert torch.equal(biased, first[0]) and torch.equal(plain, first[1])
    assert silu_vector_bits() == 512  # the context put the widest back


def test_bias_silu_falls_back_for_what_the_kernel_does_not_take() -> None:
    x, bias = torch.randn(2, 4, 6, dtype=torch.float64), torch.randn(2, 1, 6, dtype=torch.float64)
    assert torch.equal(bias_silu_(x.clone(), bias), F.silu(x + bias))
    x, bias = torch.randn(2, 4, 6), torch.randn(6)  # a bias broadcast another way
    assert torch.allclose(bias_silu_(x.clone(), bias), F.silu(x + bias), rtol=3e-7, atol=1e-7)


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "torch"])
def test_a_prepared_bias_silu_repeats_bias_silu_on_its_buffer(kernel: bool) -> None:
    torch.manual_seed(0)
    buffer, bias = torch.empty(1, 33, 200), torch.randn(1, 1, 200)
    with torch.inference_mode():
        if kernel:
            activate = prepared_bias_silu_(buffer, bias)
        else:
            with torch_silu():
                activate = prepared_bias_silu_(buffer, bias)  # prepared within it: torch's SiLU for good
        for _ in range(3):  # new contents each time, as a worker's loop writes them
            product = torch.randn(1, 33, 200) * 4
            buffer.copy_(product)
            activate()
            assert torch.equal(buffer, bias_silu_(product.clone(), bias) if kernel else F.silu(product + bias))
    odd = torch.randn(2, 4, 6, dtype=torch.float64)  # what the kernel does not take: torch's, the same numbers
    want, biases = F.silu(odd + odd[:, :1]), odd[:, :1].clone()
    prepared_bias_silu_(odd, biases)()
    assert torch.equal(odd, want)


def test_hidden_layer_agrees_with_and_without_gradients() -> None:
    x, w, b = torch.randn(5, 33, 17), torch.randn(5, 17, 40), torch.randn(5, 1, 40)
    with_grad = hidden_layer(x, w, b)
    with torch.inference_mode():
        without = hidden_layer(x, w, b)
    assert torch.allclose(with_grad, without, rtol=1e-5, atol=1e-6)


def test_ensemble_mlp_without_hidden_layers_is_one_linear_map() -> None:
    mlp = EnsembleMLP(3, 4, 2, hidden_dim=8, num_layers=0)
    x = torch.randn(3, 5, 4)
    with torch.no_grad():
        assert torch.allclose(mlp(x), torch.baddbmm(mlp.last.bias, x, mlp.last.weight))
    with pytest.raises(ValueError, match="expects"):
        mlp(torch.randn(2, 5, 4))


@needs_kernel
def test_a_damaged_cached_build_is_rebuilt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "first"))
    monkeypatch.setattr(activation, "_state", {})
    assert fast_silu_on()
    (built,) = (tmp_path / "first" / "rehearse").glob("*.so")
    damaged = tmp_path / "second" / "rehearse" / built.name  # a build cut short where the next run looks
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a shared library")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "second"))
    monkeypatch.setattr(activation, "_state", {})
    assert fast_silu_status().startswith("on (") and fast_silu_status().endswith(f", {damaged})")
    x = torch.randn(50_000)
    assert torch.allclose(silu_(x.clone()), F.silu(x), rtol=3e-7, atol=1e-7)
