"""thriftgate: a cost-control proxy for OpenAI-compatible LLM APIs."""

__version__ = "0.1.0"
