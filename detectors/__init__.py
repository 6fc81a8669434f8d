"""Product detection and region features, installed as ``taomm.detectors``.

The torchvision Faster R-CNN product detector, RoI feature extraction and foreign
feature formats live here (DESIGN.md section 5).
"""
