"""What an ONNX file is and how it runs.

* :mod:`.signature` -- the one model reader: ``read_model(model) -> ModelSignature`` (input,
  layout, output, Softmax tail, fixed batch, labels, and the task: classifier or detector,
  with the :class:`~.detections.DetectorLayout` of a detector), a pure function of the
  ``ModelProto``; :mod:`.graph` its graph helpers;
* :mod:`.detections` -- the detector layouts and their decoding into ``Candidates``;
  :mod:`.nms` -- thresholds and NMS as Ultralytics does them;
* :mod:`.sidecar` (the preprocessing file: ours, Hugging Face's ``preprocessor_config.json`` or
  timm's ``pretrained_cfg``), :mod:`.preprocess` (pixel values the model expects),
  :mod:`.geometry` (image <-> model input, each vendor step literal, and back for maps),
  :mod:`.labels`;
* :mod:`.runtime` -- the :class:`~.runtime.Model` base and :class:`~.runtime.Classifier`: scoring
  under a query budget; :mod:`.detector` -- :class:`~.detector.Detector`: candidate boxes under
  the same budget; :mod:`.open` -- ``open_model``: one or the other, as the reader decides;
* :mod:`.backends` -- ONNX Runtime and OpenVINO sessions behind one factory.
"""
