"""mocha.student — stage 1: base pretraining of the YOLO student (`mocha pretrain`; see docs/architecture.md).

The student model itself lives in `mocha.models.detector`.
"""
