"""OpenAI's Files and Batch APIs, faked: upload, retrieve, list, delete and read files; create, retrieve, list and
cancel batches. A batch moves one status further at each retrieve (validating, in_progress, finalizing,
completed), so a test polls it as a client would; on completing, each input line is answered by the fake's
own endpoint (same replies, same usage), into an output file and, for lines that fail, an error file, in the
Batch API's line format. Unknown ids get OpenAI's 404 bodies.
"""

import email.parser
import email.policy
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.fake import endpoints, wire
from tests.fake.call import STATE, Call, Knobs, UpstreamState, error_response, send_json
from tests.fake.gate import auth_error, is_known, parse_body

BATCH_ENDPOINTS = {"/v1/chat/completions": endpoints.chat_completions, "/v1/completions": endpoints.completions,
                   "/v1/embeddings": endpoints.embeddings, "/v1/responses": endpoints.responses}
STEPS = ("validating", "in_progress", "finalizing", "completed")


@dataclass(slots=True)
class StoredFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def object(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created_at,
                "expires_at": None, "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "status_details": None}


@dataclass(slots=True)
class Batch:
    fields: dict[str, Any]
    headers: CIMultiDict  # of the create request: its x-fake-* switches apply to every line
    retrieved: int = 0


@dataclass(slots=True)
class Store:
    files: dict[str, StoredFile] = field(default_factory=dict)
    batches: dict[str, Batch] = field(default_factory=dict)


STORE = web.AppKey("fake_batch_store", Store)


def add_routes(app: web.Application) -> None:
    app[STORE] = Store()
    for method, path, handler in (
        ("POST", "/v1/files", upload), ("GET", "/v1/files", list_files), ("GET", "/v1/files/{file_id}", retrieve_file),
        ("DELETE", "/v1/files/{file_id}", delete_file), ("GET", "/v1/files/{file_id}/content", file_content),
        ("POST", "/v1/batches", create_batch), ("GET", "/v1/batches", list_batches),
        ("GET", "/v1/batches/{batch_id}", retrieve_batch), ("POST", "/v1/batches/{batch_id}/cancel", cancel_batch),
    ):
        app.router.add_route(method, path, _authenticated(handler))


def _authenticated(handler):
    async def serve(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        state.served += 1
        call = Call(request, state, {}, Knobs.of(request.headers, ""), _id("req_", state), time.perf_counter())
        rejection = auth_error(call)
        return rejection if rejection is not None else await handler(call, request.app[STORE])

    return serve


def _id(prefix: str, state: UpstreamState) -> str:
    return prefix + hashlib.blake2b(f"{state.seed}:{prefix}:{state.served}".encode(), digest_size=12).hexdigest()


def _invalid(call: Call, message: str, param: str | None = None, status: int = 400) -> web.Response:
    return error_response(call, status, wire.error_body(message, "invalid_request_error", param))


def _listed(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": objects, "first_id": objects[0]["id"] if objects else None,
            "last_id": objects[-1]["id"] if objects else None, "has_more": False}


# ---- files ----------------------------------------------------------------------------------------------


async def upload(call: Call, store: Store) -> web.StreamResponse:
    content_type = call.request.headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data"):
        return _invalid(call, "Expected a multipart/form-data request with 'file' and 'purpose'.")
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + await call.request.read())
    parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
    if "file" not in parts:
        return _invalid(call, "Missing required parameter: 'file'.", "file")
    purpose = parts["purpose"].get_content().strip() if "purpose" in parts else ""
    if purpose not in ("batch", "assistants", "fine-tune", "vision", "user_data", "evals"):
        return _invalid(call, f"'{purpose}' is not one of ['assistants', 'batch', 'fine-tune', 'vision', 'user_data', "
                              "'evals'] - 'purpose'", "purpose")
    stored = StoredFile(_id("file-", call.state), parts["file"].get_filename() or "upload", purpose,
                        parts["file"].get_payload(decode=True), int(time.time()))
    store.files[stored.id] = stored
    return await send_json(call, stored.object())


def _file(call: Call, store: Store) -> StoredFile | web.Response:
    file_id = call.request.match_info["file_id"]
    return store.files.get(file_id) or _invalid(call, f"No such File object: {file_id}", "id", 404)


async def retrieve_file(call: Call, store: Store) -> web.StreamResponse:
    found = _file(call, store)
    return found if isinstance(found, web.Response) else await send_json(call, found.object())


async def file_content(call: Call, store: Store) -> web.StreamResponse:
    found = _file(call, store)
    if isinstance(found, web.Response):
        return found
    return web.Response(body=found.content, content_type="application/octet-stream", headers=call.headers())


async def delete_file(call: Call, store: Store) -> web.StreamResponse:
    found = _file(call, store)
    if isinstance(found, web.Response):
        return found
    del store.files[found.id]
    return await send_json(call, {"id": found.id, "object": "file", "deleted": True})


async def list_files(call: Call, store: Store) -> web.StreamResponse:
    return await send_json(call, _listed([f.object() for f in store.files.values()]))


# ---- batches --------------------------------------------------------------------------------------------


async def create_batch(call: Call, store: Store) -> web.StreamResponse:
    body = parse_body(await call.request.read())
    if not isinstance(body, dict):
        return _invalid(call, "We could not parse the JSON body of your request.")
    stored = store.files.get(body.get("input_file_id"))
    if stored is None or stored.purpose != "batch":
        return _invalid(call, f"Invalid 'input_file_id': '{body.get('input_file_id')}'. The file must exist and have "
                              "purpose 'batch'.", "input_file_id")
    if body.get("endpoint") not in BATCH_ENDPOINTS:
        return _invalid(call, f"Invalid 'endpoint': '{body.get('endpoint')}'.", "endpoint")
    if body.get("completion_window") != "24h":
        return _invalid(call, "Invalid 'completion_window': only '24h' is supported.", "completion_window")
    now = int(time.time())
    fields = {
        "id": _id("batch_", call.state), "object": "batch", "endpoint": body["endpoint"], "errors": None,
        "input_file_id": stored.id, "completion_window": "24h", "status": "validating", "output_file_id": None,
        "error_file_id": None, "created_at": now, "in_progress_at": None, "expires_at": now + 86400,
        "finalizing_at": None, "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
        "cancelled_at": None, "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": body.get("metadata") or {},
    }
    store.batches[fields["id"]] = Batch(fields, CIMultiDict(call.request.headers))
    return await send_json(call, fields)


def _batch(call: Call, store: Store) -> Batch | web.Response:
    batch_id = call.request.match_info["batch_id"]
    return store.batches.get(batch_id) or _invalid(call, f"No batch found with id '{batch_id}'.", None, 404)


async def retrieve_batch(call: Call, store: Store) -> web.StreamResponse:
    found = _batch(call, store)
    if isinstance(found, web.Response):
        return found
    await _advance(call, store, found)
    return await send_json(call, found.fields)


async def list_batches(call: Call, store: Store) -> web.StreamResponse:
    return await send_json(call, _listed([batch.fields for batch in reversed(store.batches.values())]))


async def cancel_batch(call: Call, store: Store) -> web.StreamResponse:
    found = _batch(call, store)
    if isinstance(found, web.Response):
        return found
    if found.fields["status"] not in ("validating", "in_progress"):
        return _invalid(call, f"Cannot cancel a batch with status '{found.fields['status']}'.", None, 409)
    found.fields.update(status="cancelling", cancelling_at=int(time.time()))
    return await send_json(call, found.fields)


async def _advance(call: Call, store: Store, batch: Batch) -> None:
    fields, now = batch.fields, int(time.time())
    if fields["status"] == "cancelling":
        fields.update(status="cancelled", cancelled_at=now)
    elif fields["status"] in STEPS[:-1]:
        step = STEPS[STEPS.index(fields["status"]) + 1]
        fields.update(status=step, **{f"{step}_at": now})
        if step == "completed":
            await _run(call, store, batch)


async def _run(call: Call, store: Store, batch: Batch) -> None:
    """Every input line through the fake's own endpoint: an output line, or an error line."""
    fields = batch.fields
    outputs, failures = [], []
    for raw in store.files[fields["input_file_id"]].content.splitlines():
        if not raw.strip():
            continue
        line = orjson.loads(raw)
        body = line.get("body") or {}
        line_call = Call(call.request, call.state, body, Knobs.of(batch.headers, str(body.get("model", ""))),
                         _id("req_", call.state), time.perf_counter())
        call.state.served += 1
        if not is_known(call.state, str(body.get("model", ""))):
            message = f"The model `{body.get('model')}` does not exist or you do not have access to it."
            status, answer = 404, orjson.loads(wire.error_body(message, "invalid_request_error", code="model_not_found"))
        else:
            response = await BATCH_ENDPOINTS[fields["endpoint"]](line_call)
            status, answer = response.status, orjson.loads(response.body)
        entry = {"id": _id("batch_req_", call.state), "custom_id": line.get("custom_id"),
                 "response": {"status_code": status, "request_id": line_call.request_id, "body": answer}, "error": None}
        (outputs if status == 200 else failures).append(entry)
    for kind, entries in (("output", outputs), ("error", failures)):
        if entries:
            stored = StoredFile(_id("file-", call.state), f"{fields['id']}_{kind}.jsonl", f"batch_{kind}",
                                b"".join(orjson.dumps(entry) + b"\n" for entry in entries), int(time.time()))
            store.files[stored.id] = stored
            fields[f"{kind}_file_id"] = stored.id
    fields["request_counts"] = {"total": len(outputs) + len(failures), "completed": len(outputs),
                                "failed": len(failures)}
