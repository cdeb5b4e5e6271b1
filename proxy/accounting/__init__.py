"""What a request used and cost: token counts (tokens, model_families, image_tokens, tool_tokens),
prices (pricing, pricing_import, money, usage), the spend ledger, the Prometheus metrics, savings and
reports."""
