"""The ceiling of `make bench`: the least a Starlette + uvicorn server can do per request.

It reads the body, parses it with orjson (as our server does) and answers a constant, so its
requests/s and latency bound those of any model server on this stack. Started by the bench as
`python -m uvicorn benchmarks.ceiling:app`, with the same uvicorn settings our server uses.
"""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_ANSWER = orjson.dumps({"predictions": [0]})


async def invocations(request: Request) -> Response:
    try:
        orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return JSONResponse({"error": "body is not JSON"}, status_code=400)
    return Response(_ANSWER, media_type="application/json")


async def ping(request: Request) -> Response:
    return Response(b"")


app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"]), Route("/ping", ping)])
