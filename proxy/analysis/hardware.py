"""GPUs and open models for `thriftgate selfhost`: the few facts its arithmetic needs, each with its source.

Memory is in GB (10^9 bytes, as the datasheets print it), bandwidth in GB/s, compute in dense 16-bit
(FP16/BF16 tensor) TFLOPS: the "with sparsity" figures datasheets also print are twice these and are
not reached by inference kernels.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Gpu:
    name: str
    memory_gb: float
    bandwidth_gb_s: float
    tflops_16bit: float  # dense
    source: str


_A100 = "NVIDIA A100 Tensor Core GPU datasheet (SXM): https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
GPUS: dict[str, Gpu] = {gpu.name: gpu for gpu in (
    Gpu("A100-40GB", 40, 1555, 312, _A100),
    Gpu("A100-80GB", 80, 2039, 312, _A100),
    Gpu("H100-SXM", 80, 3350, 989, "NVIDIA H100 Tensor Core GPU datasheet (SXM5; 1,979 TFLOPS is with sparsity): "
        "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"),
    Gpu("L4", 24, 300, 121, "NVIDIA L4 Tensor Core GPU datasheet (242 TFLOPS is with sparsity): "
        "https://resources.nvidia.com/en-us-data-center-overview/l4-gpu-datasheet"),
    Gpu("A10G", 24, 600, 70, "AWS's variant of the A10, on EC2 G5 (NVIDIA publishes no datasheet for it): "
        "https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/"),
    Gpu("L40S", 48, 864, 362, "NVIDIA L40S datasheet (733 TFLOPS is with sparsity): "
        "https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413"),
)}


@dataclass(frozen=True, slots=True)
class OpenModel:
    """A dense decoder: its parameters, and the KV cache one token of context keeps (keys and values, every
    layer, 16-bit): 2 x layers x key/value heads x head dimension x 2 bytes."""

    name: str
    parameters: float
    kv_bytes_per_token: int
    source: str


def _kv_bytes(layers: int, kv_heads: int, head_dim: int) -> int:
    return 2 * layers * kv_heads * head_dim * 2


OPEN_MODELS: dict[str, OpenModel] = {model.name: model for model in (
    # 70B as the worked example counts it (the checkpoint holds 69B); grouped-query attention, 8 KV heads.
    OpenModel("llama-2-70b", 70e9, _kv_bytes(80, 8, 128),
              "https://huggingface.co/meta-llama/Llama-2-70b-hf/blob/main/config.json"),
    OpenModel("llama-2-13b", 13e9, _kv_bytes(40, 40, 128),
              "https://huggingface.co/meta-llama/Llama-2-13b-hf/blob/main/config.json"),
    OpenModel("llama-2-7b", 6.7e9, _kv_bytes(32, 32, 128),
              "https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json"),
    OpenModel("llama-3.1-70b", 70.6e9, _kv_bytes(80, 8, 128),
              "https://huggingface.co/meta-llama/Llama-3.1-70B/blob/main/config.json"),
    OpenModel("llama-3.1-8b", 8.0e9, _kv_bytes(32, 8, 128),
              "https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json"),
    OpenModel("mistral-7b", 7.2e9, _kv_bytes(32, 8, 128),
              "https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json"),
)}
