"""The GPU training check (issue 29): ``scripts/gpu-train-check.sh`` runs ``python3 -m
training.gpu_check``.

On one CUDA GPU, with data it makes itself, it runs the package's own commands: ``synth``
renders scenes, ``vocab`` learns a BPE vocabulary from their captions, a random 77-position
ViT-B/16-shaped CLIP is stretched to 248 positions (``stretch``, KPS) and fine-tuned with PCM
(``train``) under bf16 and fp16 autocast and in fp32 on the same steps; the loss curves are
compared, and steps/s, images/s and the fraction of the GPU's published peak measured. The
bf16 run's model is exported to ONNX (``export``) with an fp16 copy (``quantize --precision
fp16``), both checked against PyTorch on the GPU through onnxruntime, and ``train`` runs again
under torchrun (NCCL, world size 1), so that DistributedDataParallel initialises and steps.
``--out`` receives report.md, report.json and losses.csv; the tables are printed too.
``--dry-run`` runs the same stages on the CPU at tiny sizes (bf16 autocast and fp32, gloo).
Sizes and the arithmetic behind the 8-minute design are in ``sizes.py``.
"""
