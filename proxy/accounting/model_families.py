"""Which tokenizer and image rule a model uses: its family, found by the longest known prefix of its
base name (provider prefixes and fine-tune wrappers removed)."""

from dataclasses import dataclass

from proxy.accounting.image_tokens import ImageRule, PatchRule, TileRule


@dataclass(frozen=True, slots=True)
class Family:
    encoding: str
    image: ImageRule
    estimate_factor: float | None = None  # set when the model's tokenizer is not tiktoken's


# Image rules: OpenAI "Images and vision" guide, "Calculating costs" tables.
_GPT_4O_IMAGES = TileRule(base=85, per_tile=170)  # also gpt-4.1, gpt-4.5, gpt-4-turbo
O200K = "o200k_base"
CL100K = "cl100k_base"
# Other tokenizers, counted as o200k times a factor. Claude: 16% (prose) to 30% (code) more tokens
# than GPT-4o measured on the same inputs (Vantage / VentureBeat, "Hidden costs in AI deployment",
# 2024). Everything else (Gemini, Llama 3, Mistral Tekken, DeepSeek, Qwen...) uses 128k-256k-entry
# BPE/SentencePiece vocabularies that land within ~10% of o200k on English prose; 1.1 errs high.
OTHER = Family(O200K, _GPT_4O_IMAGES, estimate_factor=1.1)

# First matching prefix wins, so longer prefixes come before the shorter ones they extend.
FAMILY_BY_PREFIX: tuple[tuple[str, Family], ...] = (
    ("gpt-4o-mini", Family(O200K, TileRule(base=2833, per_tile=5667))),
    ("gpt-4o", Family(O200K, _GPT_4O_IMAGES)),
    ("chatgpt-4o", Family(O200K, _GPT_4O_IMAGES)),
    ("gpt-4.1-mini", Family(O200K, PatchRule(multiplier=1.62))),
    ("gpt-4.1-nano", Family(O200K, PatchRule(multiplier=2.46))),
    ("gpt-4.1", Family(O200K, _GPT_4O_IMAGES)),
    ("gpt-4.5", Family(O200K, _GPT_4O_IMAGES)),
    ("gpt-5-mini", Family(O200K, PatchRule(multiplier=1.62))),
    ("gpt-5-nano", Family(O200K, PatchRule(multiplier=2.46))),
    ("gpt-5", Family(O200K, TileRule(base=70, per_tile=140))),
    ("o1", Family(O200K, TileRule(base=75, per_tile=150))),
    ("o3", Family(O200K, TileRule(base=75, per_tile=150))),
    ("o4", Family(O200K, PatchRule(multiplier=1.72))),
    ("gpt-4", Family(CL100K, _GPT_4O_IMAGES)),
    ("gpt-3.5", Family(CL100K, _GPT_4O_IMAGES)),
    ("text-embedding-3", Family(CL100K, _GPT_4O_IMAGES)),
    ("text-embedding-ada-002", Family(CL100K, _GPT_4O_IMAGES)),
    ("claude", Family(O200K, _GPT_4O_IMAGES, estimate_factor=1.2)),
)


def _base_model(model: str) -> str:
    """'openai/ft:gpt-4o-mini-2024-07-18:org::id' -> 'gpt-4o-mini-2024-07-18'."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    if name.startswith("ft:"):
        name = name[3:].partition(":")[0]
    return name


def family_of(model: str) -> Family:
    base = _base_model(model)
    return next((family for prefix, family in FAMILY_BY_PREFIX if base.startswith(prefix)), OTHER)


def family_name(model: str) -> str:
    """The family a model's counts are reported under: its known prefix (gpt-4o, claude...), else "other"."""
    base = _base_model(model)
    return next((prefix for prefix, _ in FAMILY_BY_PREFIX if base.startswith(prefix)), "other")
