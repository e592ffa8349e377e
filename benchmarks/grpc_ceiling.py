"""The gRPC ceiling of `make bench`: the least grpc.aio does per call, with no model behind it.

`ModelInfer` answers a constant response to whatever request arrives (gRPC has parsed it already,
as it does for our server), on the same stack our server's gRPC runs on: grpc.aio in a uvloop
event loop. Its requests/s and server CPU per call bound those of any Python model server on
grpcio. Started by the bench as `python -m benchmarks.grpc_ceiling <port>`; ready when
ServerReady answers.
"""

from __future__ import annotations

import sys
from typing import Any

import grpc
import uvloop

from mlops.serving.proto import grpc_predict_v2_pb2 as pb
from mlops.serving.proto.grpc_predict_v2_pb2_grpc import (
    GRPCInferenceServiceServicer,
    add_GRPCInferenceServiceServicer_to_server,
)

_ANSWER = pb.ModelInferResponse(model_name="ceiling", model_version="1")
_ANSWER.outputs.add(name="predictions", datatype="INT64", shape=[1])
_ANSWER.raw_output_contents.append(bytes(8))


class Ceiling(GRPCInferenceServiceServicer):  # type: ignore[misc]  # generated, untyped
    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802 (the spec's name)
        return pb.ServerReadyResponse(ready=True)

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        return _ANSWER


async def serve(port: int) -> None:
    server = grpc.aio.server()
    add_GRPCInferenceServiceServicer_to_server(Ceiling(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
