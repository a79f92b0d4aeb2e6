"""mocha.models — the model pieces every stage shares (see docs/architecture.md).

Public face:
- `detector.Student` — the YOLO student (ultralytics `DetectionModel`) with its P3/P4/P5 maps
- `pooling.pool_regions` — region features f_A from the maps
- `translator.Translator` — f_A → teacher space (trained in stage 2)
- `bundle.Bundle`, `bundle.save_bundle`, `bundle.load_bundle` — student + translator + PCA + config
"""
