"""pydata.models.profile: FLOPs against counts worked out by hand, saved-activation bytes
against the tensors' sizes, per-module rows, the model left as it was, JSON and table output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from pydata.models import AutoEncoder, ResNet
from pydata.models.profile import MEMORY_DEFINITIONS, profile_model


def _conv_then_linear() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))


def test_flops_match_a_count_by_hand() -> None:
    result = profile_model(_conv_then_linear(), torch.randn(2, 3, 8, 8), warmup=0, repeats=1)
    # A multiply-add is 2 FLOPs; biases are not counted (FlopCounterMode's convention).
    conv = 2 * 2 * 4 * (8 * 8) * (3 * 3 * 3)  # N * C_out * output pixels * (C_in * k * k)
    linear = 2 * 2 * 256 * 5  # N * in * out
    rows = {m.name: m for m in result.modules}
    assert [m.name for m in result.modules] == ["0", "1", "2"]
    assert [m.type for m in result.modules] == ["Conv2d", "Flatten", "Linear"]
    assert [m.forward_flops for m in result.modules] == [conv, 0, linear]
    # Backward: the gradients of the input and of the weight, each as costly as the forward
    # (the example requires grad, so even the first layer computes its input gradient).
    assert (rows["0"].backward_flops, rows["2"].backward_flops) == (2 * conv, 2 * linear)
    assert (result.forward_flops, result.backward_flops) == (conv + linear, 2 * (conv + linear))


def test_parameters_are_counted_per_module_and_trainable_apart() -> None:
    model = _conv_then_linear()
    model[0].bias.requires_grad_(False)
    result = profile_model(model, torch.randn(2, 3, 8, 8), warmup=0, repeats=1)
    assert [m.parameters for m in result.modules] == [3 * 4 * 9 + 4, 0, 256 * 5 + 5]
    assert result.parameters == 112 + 1285
    assert result.trainable_parameters == 112 + 1285 - 4


def test_saved_bytes_are_the_activations_kept_for_backward() -> None:
    result = profile_model(_conv_then_linear(), torch.randn(2, 3, 8, 8), warmup=0, repeats=1)
    # The convolution keeps its input, the linear layer its (flattened) input; weights are
    # parameters and not counted, and a flatten keeps nothing.
    assert [m.saved_bytes for m in result.modules] == [2 * 3 * 64 * 4, 0, 2 * 256 * 4]
    assert result.saved_bytes == 2 * 3 * 64 * 4 + 2 * 256 * 4
    assert {(m.peak_forward_bytes, m.peak_backward_bytes) for m in result.modules} == {(None, None)}


def test_a_storage_saved_by_two_modules_counts_once_in_the_total() -> None:
    # ReLU keeps its output, which is the input the linear layer keeps.
    result = profile_model(nn.Sequential(nn.ReLU(), nn.Linear(8, 4)), torch.randn(3, 8),
                           warmup=0, repeats=1)
    assert [m.saved_bytes for m in result.modules] == [3 * 8 * 4, 3 * 8 * 4]
    assert result.saved_bytes == 3 * 8 * 4


class _WithUnusedChild(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.used(x)


def test_times_are_attributed_to_the_modules_that_ran() -> None:
    result = profile_model(_WithUnusedChild(), torch.randn(2, 4), warmup=1, repeats=3)
    used, unused = result.modules
    assert used.forward_ms > 0 and used.backward_ms > 0
    assert (unused.forward_ms, unused.backward_ms) == (0, 0)
    assert (unused.forward_flops, unused.saved_bytes) == (0, 0)
    # Each run's module interval lies inside the run's total, so the medians keep that order.
    assert used.forward_ms <= result.forward_ms and used.backward_ms <= result.backward_ms


def test_resnet_rows_are_its_stages_and_add_up() -> None:
    model = ResNet(depth=8, width=4)
    result = profile_model(model, torch.randn(2, 3, 8, 8), warmup=0, repeats=1)
    names = [m.name for m in result.modules]
    assert names == ["stem", "stage1", "stage2", "stage3", "pool", "head"]
    assert sum(m.parameters for m in result.modules) == result.parameters
    assert sum(m.forward_flops for m in result.modules) == result.forward_flops > 0
    assert (result.model, result.input_shape, result.device) == ("ResNet", (2, 3, 8, 8), "cpu")


def test_the_model_is_left_as_it_was_found() -> None:
    model = AutoEncoder(width=4)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    resnet = ResNet(depth=8, width=4)
    stats = [b.clone() for b in resnet.buffers()]
    profile_model(model, torch.rand(2, 3, 8, 8), warmup=1, repeats=1)
    profile_model(resnet, torch.randn(4, 3, 8, 8), warmup=1, repeats=1)
    assert not model.training and resnet.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])
    for buffer, saved in zip(resnet.buffers(), stats):  # batch-norm statistics untouched
        torch.testing.assert_close(buffer, saved)
    assert all(p.grad is None for p in (*model.parameters(), *resnet.parameters()))


def test_json_export_holds_every_figure(tmp_path: Path) -> None:
    result = profile_model(_conv_then_linear(), torch.randn(2, 3, 8, 8), warmup=0, repeats=2)
    text = result.to_json(tmp_path / "profile.json")
    written = json.loads((tmp_path / "profile.json").read_text())
    assert written == json.loads(text) == result.to_dict()
    assert written["input_shape"] == [2, 3, 8, 8]
    assert written["repeats"] == 2
    assert written["memory_definitions"] == MEMORY_DEFINITIONS
    assert [m["name"] for m in written["modules"]] == ["0", "1", "2"]
    assert written["modules"][0]["forward_flops"] == 27648
    assert set(written["modules"][0]) == {
        "name", "type", "parameters", "forward_flops", "backward_flops", "forward_ms",
        "backward_ms", "saved_bytes", "peak_forward_bytes", "peak_backward_bytes"}


def test_the_table_has_a_row_per_module_and_a_total() -> None:
    result = profile_model(_conv_then_linear(), torch.randn(2, 3, 8, 8), warmup=0, repeats=1)
    lines = result.format_table().splitlines()
    assert lines[0].startswith("Sequential on [2, 3, 8, 8] (cpu, median of 1 runs): 1,397 ")
    assert lines[1].split()[:5] == ["module", "type", "params", "fwd", "FLOP"]
    assert [line.split()[:3] for line in lines[2:6]] == [
        ["0", "Conv2d", "112"], ["1", "Flatten", "0"], ["2", "Linear", "1,285"],
        ["(total)", "Sequential", "1,397"]]
    assert lines[2].split()[3:5] == ["27.6K", "55.3K"]
    assert "peak" not in lines[1]  # CUDA-only columns


class _TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.layer(x), x


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="floating-point example batch, got dtype torch.int64"):
        profile_model(_conv_then_linear(), torch.zeros(2, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="Linear has no child modules"):
        profile_model(nn.Linear(2, 2), torch.randn(1, 2))
    with pytest.raises(ValueError, match="repeats >= 1 and warmup >= 0, got 0 and 2"):
        profile_model(_conv_then_linear(), torch.randn(2, 3, 8, 8), repeats=0)
    with pytest.raises(TypeError, match="returns one tensor, _TwoOutputs returned tuple"):
        profile_model(_TwoOutputs(), torch.randn(1, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_reports_allocator_peaks() -> None:
    example = torch.randn(8, 3, 32, 32, device="cuda")
    result = profile_model(ResNet(depth=8, width=8).cuda(), example, warmup=1, repeats=2)
    assert result.device == "cuda:0"
    stage1 = next(m for m in result.modules if m.name == "stage1")
    assert stage1.peak_forward_bytes is not None and stage1.peak_forward_bytes > 0
    assert stage1.peak_backward_bytes is not None and stage1.peak_backward_bytes > 0
    assert "peak fwd MiB" in result.format_table()
