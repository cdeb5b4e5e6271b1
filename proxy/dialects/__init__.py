"""Dialects: the wire formats thriftgate speaks at its edges, as translations around one pipeline.

An ingress dialect (base.Dialect) is what a client speaks at one endpoint: OpenAI's (openai.py, over
proxy/openai_wire.py, openai_usage.py and sse.py) or Anthropic's Messages API (anthropic.py). The exchange
carries it, and the stages and policies ask it about the body instead of asking which one it is.

A provider (providers.py) is what an upstream speaks. It gives each attempt a leg: the body, path and
headers for that upstream, and the answer turned back into the client's dialect (translate_*.py)
when the two differ. A body whose dialect is the provider's goes through as it came.

The paths each ingress dialect serves are in ingress.py. This package imports nothing.
"""
