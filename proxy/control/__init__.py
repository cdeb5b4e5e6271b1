"""The control plane: the admin API, virtual keys, config reload, the web UI, and the typed config of
auth, store and budgets."""
