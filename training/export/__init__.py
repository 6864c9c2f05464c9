"""From a checkpoint to the server's model directory: ONNX export, int8 and fp16 towers."""
