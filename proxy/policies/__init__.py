"""Policies: plugins behind one small protocol (base). The registry of types (registry) is handed to
config parsing and to the policy chain by the composition roots; this package imports nothing."""
