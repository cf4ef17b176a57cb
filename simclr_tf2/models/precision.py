"""The compute precision `--precision=auto` resolves to, and why.

On a CPU, bfloat16 pays where the processor has bfloat16 instructions:
`amx_bf16` (Intel Sapphire Rapids and later: AMX tiles) or `avx512_bf16`
(AMD Zen 4, Intel Cooper Lake). Measured on an AMD EPYC with avx512_bf16
(docs/performance.md), the mixed_bfloat16 step is at least as fast as the
float32 one at every width the benchmarks cover (ResNet-18 from 1/8 width to
full, 8-32 px), once batch norm of channel counts that oneDNN's bfloat16
kernel cannot block runs in float32 (`batch_norm.normalisation_dtype`).
Without those instructions bfloat16 is emulated and float32 is kept.

On a TPU the choice is mixed_bfloat16 (its native format). On a GPU it stays
float32: whether bfloat16 or float16 pays depends on the card, so it is left
to an explicit `--precision`.
"""

CPU_FLAGS_FILE = "/proc/cpuinfo"
# In order of preference: the first one the CPU lists is the reason given.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo_path=CPU_FLAGS_FILE):
    """The set of feature flags of the first processor in /proc/cpuinfo.

    Returns:
      A set of strings, empty where the file is missing (not Linux).
    """
    try:
        with open(cpuinfo_path) as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose_precision(*, use_tpu=False, num_gpus=0, flags=None):
    """What `--precision=auto` means on this machine.

    Args:
      use_tpu: the run goes to a TPU.
      num_gpus: GPUs visible to TensorFlow.
      flags: the CPU's feature flags (default: read from /proc/cpuinfo).

    Returns:
      (precision, reason): a Keras mixed-precision policy name and the short
      reason printed beside it in the effective configuration.
    """
    if use_tpu:
        return "mixed_bfloat16", "TPU"
    if num_gpus:
        return "float32", "GPU: set --precision=mixed_bfloat16 or mixed_float16 to use its half-precision units"
    flags = cpu_flags() if flags is None else set(flags)
    for flag in BF16_CPU_FLAGS:
        if flag in flags:
            return "mixed_bfloat16", flag
    return "float32", "CPU without amx_bf16 or avx512_bf16"
