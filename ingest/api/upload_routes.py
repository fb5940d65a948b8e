"""The upload routes (``upload.py`` holds what they share: the uploads in
progress, their limits and endings)."""

from __future__ import annotations

from aiohttp import web

from .auth import problem
from .routing import api
from .state import TOKEN, UPLOADS
from .upload import Done, Uploads


@api("POST", "/api/v1/upload", scope="write", timeout=False)
async def upload_once(request: web.Request) -> web.Response:
    uploads: Uploads = request.app[UPLOADS]
    with uploads.slot():
        up = uploads.begin(request, request[TOKEN], resumable=False)
        await uploads.receive(up, request)
        return await uploads.finish(up)


@api("POST", "/api/v1/uploads", scope="write")
async def create_upload(request: web.Request) -> web.Response:
    uploads: Uploads = request.app[UPLOADS]
    up = uploads.begin(request, request[TOKEN], resumable=True)
    return web.json_response(up.as_dict(), status=201,
                             headers={"Location": f"/api/v1/uploads/{up.id}"})


@api("GET", "/api/v1/uploads/{id}", scope="write")
async def show_upload(request: web.Request) -> web.Response:
    up = request.app[UPLOADS].get(request.match_info["id"], request[TOKEN])
    return web.json_response(up.as_dict())


@api("PUT", "/api/v1/uploads/{id}", scope="write", timeout=False)
async def append_upload(request: web.Request) -> web.Response:
    uploads: Uploads = request.app[UPLOADS]
    up = uploads.get(request.match_info["id"], request[TOKEN])
    text = request.query.get("offset")
    if text is None or not text.isdigit():
        raise problem(400, "give ?offset=N, the bytes received so far", offset=up.offset)
    if isinstance(up, Done) or up.state != "open":
        raise problem(409, f"upload is {up.state}", offset=up.offset)
    if up.lock.locked():
        raise problem(409, "another chunk of this upload is in progress", offset=up.offset)
    async with up.lock:
        if int(text) != up.offset:
            raise problem(409, f"offset {text} is not where the upload stands", offset=up.offset)
        with uploads.slot():
            await uploads.receive(up, request)
    return web.json_response(up.as_dict())


@api("POST", "/api/v1/uploads/{id}/finish", scope="write")
async def finish_upload(request: web.Request) -> web.Response:
    uploads: Uploads = request.app[UPLOADS]
    up = uploads.get(request.match_info["id"], request[TOKEN])
    if isinstance(up, Done):
        return await uploads.finish(up)
    if up.lock.locked():
        raise problem(409, "a chunk of this upload is in progress", offset=up.offset)
    async with up.lock:
        return await uploads.finish(up)


@api("DELETE", "/api/v1/uploads/{id}", scope="write")
async def cancel_upload(request: web.Request) -> web.Response:
    uploads: Uploads = request.app[UPLOADS]
    up = uploads.get(request.match_info["id"], request[TOKEN])
    await uploads.cancel(up)
    return web.Response(status=204)
