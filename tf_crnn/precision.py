"""The ``precision`` setting: which Keras mixed-precision policy the network computes in.

``auto`` decides from the hardware of the process that builds the graph (never from the machine
the code was written on): bfloat16 on CPUs that compute it natively (AMX, or AVX-512 BF16),
float16 on GPUs with tensor cores (compute capability 7.0 or newer), float32 otherwise. Variables
stay float32 under every policy, so a checkpoint trained in one precision resumes, evaluates and
exports in any other. The CTC loss, the softmax inside it and decoding always run in float32: the
network's last layer outputs float32 logits.

Two exceptions, where bfloat16 convolutions fail although the CPU has the instructions:

- TensorFlow 2.15's distributed runtime (a ``TF_CONFIG`` cluster) has no bfloat16 kernel for the
  fused convolutions its graph optimizer makes (found by the cluster tests);
- ``ONEDNN_MAX_CPU_ISA`` (or its older name ``DNNL_MAX_CPU_ISA``) holding oneDNN below
  ``AVX512_CORE_BF16`` (``AVX2``, say, to stand in for an older CPU): oneDNN then cannot create a
  bfloat16 convolution, and training fails at its first step.

In both, ``auto`` picks float32 and an explicit ``mixed_bfloat16`` is refused before training.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import tensorflow as tf

logger = logging.getLogger("tf_crnn")

FLOAT32 = "float32"
MIXED_BFLOAT16 = "mixed_bfloat16"
MIXED_FLOAT16 = "mixed_float16"
AUTO = "auto"
PRECISIONS = (AUTO, FLOAT32, MIXED_BFLOAT16, MIXED_FLOAT16)
# CPU flags (as /proc/cpuinfo names them) that make bfloat16 matrix products native.
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
TENSOR_CORES = (7, 0)  # the first GPU compute capability with float16 tensor cores
CPU_CLUSTER = (
    "bfloat16 convolutions do not run in a TF_CONFIG cluster on CPU with TensorFlow 2.15 (its "
    "distributed runtime has no bfloat16 _FusedConv2D kernel)"
)
# The variables that cap the instruction sets oneDNN may use, newer name first, and the caps
# (oneDNN's names) below its bfloat16 kernels.
ONEDNN_ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
ISAS_WITHOUT_BFLOAT16 = frozenset(
    {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
)


class PrecisionError(ValueError):
    """A precision that cannot run where it was asked for; the message says why."""


@dataclass(frozen=True)
class Hardware:
    """What ``auto`` looks at: the CPU's flags, the compute capability of each visible GPU, and
    the instruction-set cap set for oneDNN (e.g. ``"ONEDNN_MAX_CPU_ISA=AVX2"``), if any."""

    cpu_flags: frozenset[str]
    gpu_capabilities: tuple[tuple[int, int], ...]
    onednn_isa_cap: str | None = None

    @classmethod
    def of_this_machine(cls) -> Hardware:
        gpus = tf.config.list_physical_devices("GPU")
        capabilities = tuple(
            tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)))
            for gpu in gpus
        )
        return cls(frozenset(_cpu_flags()), capabilities, _onednn_isa_cap())

    def bfloat16_problem(self, in_cluster: bool) -> str | None:
        """Why bfloat16 convolutions would fail on this machine's CPU although it may have the
        instructions, or None."""
        if self.gpu_capabilities:  # the convolutions run on the GPUs
            return None
        if in_cluster:
            return CPU_CLUSTER
        if self.onednn_isa_cap:
            variable, isa = self.onednn_isa_cap.split("=", 1)
            if isa.strip().upper() in ISAS_WITHOUT_BFLOAT16:
                return (
                    f"{variable}={isa} keeps oneDNN below AVX512_CORE_BF16, and it cannot then "
                    "create bfloat16 convolutions"
                )
        return None


def _onednn_isa_cap() -> str | None:
    """``NAME=VALUE`` of the variable that caps oneDNN's instruction sets, if one is set."""
    for variable in ONEDNN_ISA_VARIABLES:
        if os.environ.get(variable):
            return f"{variable}={os.environ[variable]}"
    return None


def _cpu_flags() -> set[str]:
    """The flags of the first CPU in /proc/cpuinfo (empty where there is no such file)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve(
    requested: str, hardware: Hardware | None = None, in_cluster: bool = False
) -> tuple[str, str]:
    """The policy to compute in, and why: ``requested`` itself, or what ``auto`` picks.

    ``in_cluster``: the graph runs in a ``TF_CONFIG`` cluster (see the module docstring).
    """
    if requested == FLOAT32 or requested == MIXED_FLOAT16:
        return requested, "set by the precision setting"
    hardware = hardware or Hardware.of_this_machine()
    bfloat16_problem = hardware.bfloat16_problem(in_cluster)
    if requested == MIXED_BFLOAT16:
        if bfloat16_problem:
            raise PrecisionError(f"precision: {MIXED_BFLOAT16} cannot apply: {bfloat16_problem}")
        return requested, "set by the precision setting"
    if hardware.gpu_capabilities:
        if all(capability >= TENSOR_CORES for capability in hardware.gpu_capabilities):
            return MIXED_FLOAT16, "auto: every GPU has float16 tensor cores"
        return FLOAT32, "auto: a GPU without float16 tensor cores"
    native = [flag for flag in BFLOAT16_CPU_FLAGS if flag in hardware.cpu_flags]
    if native and bfloat16_problem:
        return FLOAT32, f"auto: {bfloat16_problem}"
    if native:
        return MIXED_BFLOAT16, f"auto: this CPU computes bfloat16 natively ({', '.join(native)})"
    return FLOAT32, "auto: no native bfloat16 on this CPU and no GPU"


_logged: set[tuple[str, str]] = set()


def keras_policy(requested: str, in_cluster: bool = False) -> tf.keras.mixed_precision.Policy:
    """The Keras policy for the layers of the network; says once per process what it picked."""
    name, reason = resolve(requested, in_cluster=in_cluster)
    if (name, reason) not in _logged:
        _logged.add((name, reason))
        logger.info("precision: %s (%s)", name, reason)
    return tf.keras.mixed_precision.Policy(name)
