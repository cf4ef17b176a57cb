"""--precision=auto: the policy chosen from the CPU's flags and devices, and why."""

import pytest

import flags as simclr_flags
from simclr_tf2.models import precision
from tests.harness import parsed


@pytest.mark.parametrize("cpu_flags,expected", [
    ({"avx512f", "amx_bf16", "amx_tile", "avx512_bf16"}, ("mixed_bfloat16", "amx_bf16")),
    ({"avx512f", "avx512_bf16"}, ("mixed_bfloat16", "avx512_bf16")),
    ({"avx2", "fma"}, ("float32", "CPU without amx_bf16 or avx512_bf16")),
    (set(), ("float32", "CPU without amx_bf16 or avx512_bf16")),
])
def test_cpu_choice_follows_bf16_instructions(cpu_flags, expected):
    assert precision.choose_precision(flags=cpu_flags) == expected


def test_tpu_and_gpu_override_the_cpu():
    bf16_cpu = {"avx512_bf16"}
    assert precision.choose_precision(use_tpu=True, flags=set())[0] == "mixed_bfloat16"
    chosen, reason = precision.choose_precision(num_gpus=1, flags=bf16_cpu)
    assert chosen == "float32" and reason.startswith("GPU")


def test_cpu_flags_reads_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\n"
                       "flags\t\t: fpu sse avx512_bf16 amx_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu\n")
    assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "sse", "avx512_bf16",
                                                 "amx_bf16"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == set()


def test_auto_is_resolved_with_its_reason(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_bf16"})
    values, origin = simclr_flags.effective_values(parsed("--dataset=cifar10"))
    assert values["precision"] == "mixed_bfloat16"
    assert origin["precision"] == "auto: avx512_bf16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2"})
    values, origin = simclr_flags.effective_values(parsed("--dataset=cifar10"))
    assert values["precision"] == "float32" and origin["precision"].startswith("auto: ")


def test_explicit_and_recipe_precision_win_over_auto(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"amx_bf16"})
    values, origin = simclr_flags.effective_values(
        parsed("--dataset=cifar10", "--precision=float32"))
    assert (values["precision"], origin["precision"]) == ("float32", "flag")
    values, origin = simclr_flags.effective_values(parsed("--dataset=digits"))
    assert (values["precision"], origin["precision"]) == ("float32", "recipe:digits")
