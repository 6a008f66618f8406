"""TF Serving's gRPC API (PredictionService.Predict / GetModelMetadata, ModelService.GetModelStatus) on grpcio.

Uses the official `tensorflow_serving.apis` protos, so any TF Serving client (e.g. `PredictionServiceStub`) works.
"""
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
    prediction_service_pb2_grpc)
from tensorflow_serving.apis import status_pb2

from serving.errors import ServingError, invalid

_STATE_ENUM = {
    "LOADING": get_model_status_pb2.ModelVersionStatus.LOADING,
    "AVAILABLE": get_model_status_pb2.ModelVersionStatus.AVAILABLE,
    "END": get_model_status_pb2.ModelVersionStatus.END,
}


def _version(model_spec):
    if model_spec.HasField("version"):
        return model_spec.version.value
    if model_spec.version_label:
        raise invalid("version labels are not supported by this server; request a version number")
    return None


def _abort(context, error):
    context.abort(error.code, error.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata over a `ScoringService`."""

    def __init__(self, service, max_tensor_bytes=64 << 20):
        self.service = service
        self.max_tensor_bytes = max_tensor_bytes

    def _check_declared_size(self, name, tensor):
        """A TensorProto may declare a shape far larger than the values it carries (TF fills it with the last
        value): refuse one whose expansion would exceed the message limit, before expanding it."""
        sizes = [dim.size for dim in tensor.tensor_shape.dim]
        if any(size < 0 for size in sizes):
            raise invalid(f"input '{name}' declares a negative dimension {sizes}")
        itemsize = tf.dtypes.as_dtype(tensor.dtype).size if tensor.dtype else 1
        declared = itemsize * int(np.prod(sizes, dtype=np.float64))
        if declared > self.max_tensor_bytes:
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"input '{name}' declares shape {sizes}: {declared:.0f} bytes, over the limit of "
                               f"{self.max_tensor_bytes} bytes")

    def Predict(self, request, context):  # noqa: N802 (gRPC naming)
        try:
            inputs = {}
            for name, tensor in request.inputs.items():
                self._check_declared_size(name, tensor)
                try:
                    inputs[name] = tf.make_ndarray(tensor)
                except Exception as error:  # noqa: BLE001 - malformed TensorProto
                    raise invalid(f"input '{name}' is not a valid TensorProto: {error}") from None
            servable, signature, outputs = self.service.predict(
                request.model_spec.name, _version(request.model_spec), request.model_spec.signature_name,
                inputs, output_filter=list(request.output_filter))
        except ServingError as error:
            _abort(context, error)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature.name
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise invalid("Metadata field(s) other than signature_def are not supported; got "
                              f"{fields or 'none'}")
            servable = self.service.manager.get(request.model_spec.name, _version(request.model_spec))
        except ServingError as error:
            _abort(context, error)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in servable.signature_def_map.items():
            signature_map.signature_def[key].CopyFrom(signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelStatusServicer(model_service_pb2_grpc.ModelServiceServicer):
    """ModelService.GetModelStatus (HandleReloadConfigRequest is not supported)."""

    def __init__(self, service):
        self.service = service

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            statuses = self.service.manager.status(request.model_spec.name, _version(request.model_spec))
        except ServingError as error:
            _abort(context, error)
        response = get_model_status_pb2.GetModelStatusResponse()
        for item in statuses:
            status = response.model_version_status.add()
            status.version = int(item["version"])
            status.state = _STATE_ENUM[item["state"]]
            message = item["status"]["error_message"]
            status.status.CopyFrom(status_pb2.StatusProto(error_code=2 if message else 0,  # 2: UNKNOWN
                                                          error_message=message))
        return response


def make_grpc_server(service, address, max_message_bytes=64 << 20, max_workers=16):
    """A started grpcio server on `address` ("127.0.0.1:0" picks a port); returns (server, port).

    Args:
      service: a `ScoringService`.
      address: "host:port".
      max_message_bytes: largest request/response; bigger requests get RESOURCE_EXHAUSTED. Default 64 MiB.
      max_workers: handler threads. Default 16.
    """
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes),
               ("grpc.so_reuseport", 0)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
                         options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(service, max_tensor_bytes=max_message_bytes), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelStatusServicer(service), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind the gRPC server to {address}")
    server.start()
    return server, port
