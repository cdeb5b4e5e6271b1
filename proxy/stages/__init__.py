"""The request's stages, in the order proxy/pipeline.py runs them: authenticate (auth), policies
(hooks: the chain of policy plugins), count, reserve (budget; budget_rules: what each budget counts),
forward (upstream) or stream, settle, record (ledger, metrics, access log)."""
