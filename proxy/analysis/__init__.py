"""Offline analysis of recorded traffic: what-if repricing, the self-hosting break-even, batch eligibility,
tokens per word. Pure functions over spend rows; the rows come through `records.py` alone."""
