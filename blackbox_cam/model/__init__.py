"""What an ONNX file is and how it runs.

* :mod:`.signature` -- the one model reader: ``read_model(model) -> ModelSignature`` (input,
  layout, output, Softmax tail, fixed batch, labels), a pure function of the ``ModelProto``;
* :mod:`.sidecar` (the preprocessing file: ours, Hugging Face's ``preprocessor_config.json`` or
  timm's ``pretrained_cfg``), :mod:`.preprocess` (pixel values the model expects),
  :mod:`.geometry` (image <-> model input, each vendor step literal, and back for maps),
  :mod:`.labels`;
* :mod:`.runtime` -- :class:`~.runtime.Classifier`: scoring under a query budget;
* :mod:`.backends` -- ONNX Runtime and OpenVINO sessions behind one factory.
"""
