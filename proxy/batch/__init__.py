"""The Batch API (/v1/files, /v1/batches): handled endpoints of their own, every output line priced."""
