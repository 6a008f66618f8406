"""The protocol-independent core of the server: find the servable, validate, batch, run, filter outputs."""
from serving.batching import Batcher
from serving.errors import invalid
from serving.model_manager import ModelManager


class ScoringService:
    """What REST and gRPC front ends call.

    Args:
      manager: a started `ModelManager`.
      batcher: a `Batcher`, or None to run every request on its own.
      request_timeout_s: longest a request may wait for its batch to run. Default 60.
    """

    def __init__(self, manager: ModelManager, batcher: Batcher | None = None, request_timeout_s=60.0):
        self.manager = manager
        self.batcher = batcher
        self.request_timeout_s = request_timeout_s

    def predict(self, model_name, version, signature_name, inputs, output_filter=()):
        """Scores `inputs` (dict name → array-like).

        Args:
          model_name: served model name.
          version: int or None (newest).
          signature_name: signature key; "" or None means serving_default.
          inputs: dict name → numpy array or nested lists.
          output_filter: names of the outputs to return (default all).

        Returns:
          (servable, signature, dict name → numpy array).

        Raises:
          ServingError with TF Serving's codes.
        """
        servable = self.manager.get(model_name, version)
        signature = servable.signature(signature_name)
        arrays = signature.validate(inputs)
        unknown = sorted(set(output_filter) - set(signature.outputs))
        if unknown:
            raise invalid(f"output tensor alias not found in signature: {unknown[0]} Outputs expected to be in "
                          f"the set {{{','.join(sorted(signature.outputs))}}}.")
        if self.batcher is None:
            outputs = signature(arrays)
        else:
            outputs = self.batcher.submit(servable, signature, arrays, timeout=self.request_timeout_s)
        if output_filter:
            outputs = {name: outputs[name] for name in output_filter}
        return servable, signature, outputs
