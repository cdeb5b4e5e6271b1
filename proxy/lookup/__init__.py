"""Lookups: answers served from a store instead of generated (exact_cache, semantic_cache, answers).

canonical  entry keys: tenant scope and a canonical hash of what shapes the answer
guard      the near-miss guard (negations, alternatives, numbers, names, word alignment); words, synonyms: its lists
calibration  the guard model (which checks run, learned) and the operating point max_wrong_rate picks
verifier   a second opinion on uncertain candidates: an upstream model asked yes/no, or a local cross-encoder
embedders  upstream and local embedders, batching concurrent lookups
index      vector search: numpy brute force, usearch HNSW for large partitions
entries    the Entry, its wire form, the in-process store (Redis: proxy/store/lookup_redis.py)
policy     the flow lookup policies share; similar: semantic matching; stored: what may be stored
service    Lookups, built once by make_app; admin: DELETE /admin/lookup, POST /admin/lookup/answers
"""
