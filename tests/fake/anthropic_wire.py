"""Anthropic's wire objects, field for field: messages, stream events, usage, errors, headers."""

import hashlib
import time
from typing import Any

import orjson

from tests.fake.content import Generated
from tests.fake.prompt_cache import CacheUse

API_VERSIONS = ("2023-06-01", "2026-10-21")
SAMPLING_REMOVED_IN = "2026-10-21"
# Dated snapshots of aliases, as the API names them in answers.
SNAPSHOTS = {"claude-sonnet-4-5": "claude-sonnet-4-5-20250929", "claude-haiku-4-5": "claude-haiku-4-5-20251001",
             "claude-opus-4-5": "claude-opus-4-5-20251101"}


def event(name: str, payload: dict[str, Any]) -> bytes:
    """Every Anthropic event is named twice: in its `event:` line and in its payload's `type`."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **payload}) + b"\n\n"


def error_body(kind: str, message: str, request_id: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id})


def headers(request_id: str, started: float) -> dict[str, str]:
    return {
        "request-id": request_id,
        "anthropic-organization-id": "00000000-0000-4000-8000-fakeorg00000",
        "anthropic-ratelimit-requests-limit": "4000",
        "anthropic-ratelimit-requests-remaining": "3999",
        "anthropic-ratelimit-requests-reset": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1)),
        "anthropic-ratelimit-input-tokens-limit": "2000000",
        "anthropic-ratelimit-output-tokens-limit": "400000",
        "x-envoy-upstream-service-time": str(int((time.perf_counter() - started) * 1000)),
    }


def usage(input_total: int, cache: CacheUse, output: int, thinking: int) -> dict[str, Any]:
    """input_tokens leaves out what was read from and written to the cache: Anthropic reports them apart."""
    counts = {
        "input_tokens": input_total - cache.read - cache.written,
        "cache_creation_input_tokens": cache.written,
        "cache_read_input_tokens": cache.read,
        "cache_creation": {"ephemeral_5m_input_tokens": cache.written_5m, "ephemeral_1h_input_tokens": cache.written_1h},
        "output_tokens": output,
    }
    if thinking:
        counts["output_tokens_details"] = {"thinking_tokens": thinking}
    return {**counts, "service_tier": "standard"}


def message_id(request_id: str) -> str:
    return "msg_01" + hashlib.sha1(request_id.encode()).hexdigest()[:22]


def content_blocks(reply: Generated, thinking: str | None) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if thinking is not None:
        blocks.append({"type": "thinking", "thinking": thinking, "signature": "c2lnbmF0dXJl"})
    if reply.tool_name:
        blocks.append({"type": "tool_use", "id": "toolu_01" + reply.call_id[5:], "name": reply.tool_name,
                       "input": orjson.loads(reply.text)})
    else:
        blocks.append({"type": "text", "text": reply.text})
    return blocks


def message(msg_id: str, model: str, blocks: list[dict[str, Any]], stop_reason: str, stop_sequence: str | None,
            counts: dict[str, Any]) -> dict[str, Any]:
    return {"id": msg_id, "type": "message", "role": "assistant", "model": SNAPSHOTS.get(model, model),
            "content": blocks, "stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": counts}


def stream_events(final: dict[str, Any], reply: Generated, thinking: str | None) -> list[bytes]:
    """message_start (usage so far: output 1), each block opened, its deltas (a ping after the first
    block opens), closed; message_delta with the stop reason and the cumulative usage; message_stop."""
    start_usage = {**final["usage"], "output_tokens": 1}
    start_usage.pop("output_tokens_details", None)
    opened = {**final, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    events = [event("message_start", {"message": opened})]
    for index, block in enumerate(final["content"]):
        if block["type"] == "thinking":
            events.append(event("content_block_start", {"index": index, "content_block": {
                "type": "thinking", "thinking": "", "signature": ""}}))
            events.append(event("content_block_delta", {"index": index, "delta": {
                "type": "thinking_delta", "thinking": thinking}}))
            events.append(event("content_block_delta", {"index": index, "delta": {
                "type": "signature_delta", "signature": block["signature"]}}))
        elif block["type"] == "tool_use":
            events.append(event("content_block_start", {"index": index, "content_block": {
                **block, "input": {}}}))
            events.append(event("content_block_delta", {"index": index, "delta": {
                "type": "input_json_delta", "partial_json": ""}}))
            events += [event("content_block_delta", {"index": index, "delta": {
                "type": "input_json_delta", "partial_json": piece}}) for piece in reply.pieces]
        else:
            events.append(event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}))
            if index == 0:
                events.append(event("ping", {}))
            events += [event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
                       for piece in reply.pieces]
        events.append(event("content_block_stop", {"index": index}))
    final_usage = {k: v for k, v in final["usage"].items() if k not in ("cache_creation", "service_tier")}
    events.append(event("message_delta", {"delta": {"stop_reason": final["stop_reason"],
                                                    "stop_sequence": final["stop_sequence"]}, "usage": final_usage}))
    events.append(event("message_stop", {}))
    return events
