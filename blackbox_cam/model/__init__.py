"""What an ONNX file is and how it runs.

* :mod:`.signature` -- the one model reader: ``read_model(model) -> ModelSignature`` (input,
  layout, output, Softmax tail, fixed batch, labels), a pure function of the ``ModelProto``;
* :mod:`.preprocess` (the sidecar: pixels the model expects), :mod:`.geometry` (image <-> model
  input, and back for maps), :mod:`.labels`;
* :mod:`.runtime` -- :class:`~.runtime.Classifier`: scoring under a query budget;
* :mod:`.backends` -- ONNX Runtime and OpenVINO sessions behind one factory.
"""
