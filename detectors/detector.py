"""The product detector: torchvision Faster R-CNN whose box head yields the region features.

Data contract (as torchvision's): boxes are ``[x1, y1, x2, y2]`` in pixels of the input
image, ``0 <= x1 < x2 <= W``; class labels are taxonomy ids (0..C-1) — torchvision's
background 0 is handled here (``label + 1`` inside the model).

The box head is a two-layer MLP of width ``representation_size`` (2048, as the paper's
features); its output for a region is that region's feature. An optional attribute head
(one softmax per attribute group: colour, pattern, product, style ..., on the same 2048-d
vector) is trained on the sampled foreground RoIs alongside the detection losses, as
bottom-up-attention trains its attributes, so that the features keep what a title
describes. :func:`load_pretrained` starts it from torchvision's COCO or ImageNet weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d, MultiScaleRoIAlign, nms
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from taomm.detectors.pixels import PixelDescriptor, Standardiser
from taomm.errors import OptionError, TaommError

BACKBONES = ("resnet18", "resnet34", "resnet50")
CONFIG_NAME, WEIGHTS_NAME = "detector.json", "detector.safetensors"
# Region extraction (the paper's zh setting): at most 16 regions per image, each scoring
# strictly above 0.1; class-agnostic NMS at IoU 0.3.
MAX_REGIONS, MIN_SCORE, NMS_IOU = 16, 0.1, 0.3


@dataclass
class DetectorConfig:
    classes: list[str]  # taxonomy class names; label i is classes[i]
    backbone: str = "resnet18"  # resnet18 for CPU, resnet50 (the usual FPN) for GPUs
    representation_size: int = 2048  # box-head width = region feature size
    # Images are resized so the short side is min_size (the long side capped by max_size).
    # 128 suits centred product photos on CPU (300 steps: mAP@0.5 0.47 on the demo catalog,
    # against 0.12 for 150 steps at 192); raise it on GPUs (--image-size 600).
    min_size: int = 128
    max_size: int = 256
    # Proposal and RoI sampling sizes: torchvision's defaults (2000/1000 proposals, 512 RoIs)
    # cost ~4 s a step on 2 CPU cores; small product photos need far fewer.
    rpn_pre_nms_top_n_train: int = 600
    rpn_post_nms_top_n_train: int = 300
    rpn_pre_nms_top_n_test: int = 300
    rpn_post_nms_top_n_test: int = 50  # 150 costs 2x the extraction time (measured); products are 1-3 a photo
    box_batch_size_per_image: int = 32  # 128 costs 1.8x the step time on CPU (measured)
    attributes: dict[str, list[str]] = field(default_factory=dict)  # e.g. {"colour": [...], "pattern": [...]}
    # From scratch: trainable BatchNorm in every stage. From pretrained weights (--weights):
    # torchvision's usual FrozenBatchNorm2d ("frozen") and the last 3 stages trained.
    norm: str = "batch"
    # Width of the feature pyramid, the RPN head and the RoI features (torchvision: 256). With
    # a ResNet-18 at 128 px the pyramid and RPN convs cost 4x the ResNet itself (measured
    # FLOPs of a train step: 86 of 153 GFLOP); 128 halves the step (see the README).
    fpn_channels: int = 256
    trainable_layers: int = 5
    weights: str | None = None  # what training started from: coco, imagenet, a file; None = scratch
    # The region vector ends with fixed colour, texture and shape statistics of its pixels
    # (taomm.detectors.pixels, 1,343 of the 2048 dimensions; the box head learns the rest):
    # what a few hundred steps from scratch do not learn. False: the box head's alone
    # (detectors saved before it existed).
    pixel_features: bool = False
    # The pixel statistics include the silhouette (146 of the 1,343); False for detectors
    # saved before it (load() reads a config without the key so).
    pixel_silhouette: bool = True
    # The silhouette is taken at the object's extent found around the box rather than at the
    # box itself (taomm.detectors.pixels.object_extent); False for detectors saved before it.
    pixel_recentre: bool = True
    # The pixel statistics include thin lines and the hem (179 more), and the extent is the
    # foreground connected to the box (taomm.detectors.pixels); False for detectors saved before.
    pixel_details: bool = True
    # The pixel statistics include texture, colour and lines averaged over the object's inside
    # (130 more: taomm.detectors.pixels); False for detectors saved before.
    pixel_interior: bool = True

    @property
    def num_attributes(self) -> int:
        return sum(len(v) for v in self.attributes.values())


def select_regions(boxes: torch.Tensor, scores: torch.Tensor, max_regions: int = MAX_REGIONS,
                   min_score: float = MIN_SCORE, nms_iou: float = NMS_IOU, min_regions: int = 1) -> torch.Tensor:
    """Which detections become regions: boxes (P, 4) pixels at least 1 px wide and high,
    class-agnostic NMS, score strictly above ``min_score``, at most ``max_regions``; with
    fewer than ``min_regions`` above the score, the best-scoring others fill up to it.
    Returns their indices by decreasing score (possibly none)."""
    valid = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    if min_regions <= 1:
        valid &= scores > min_score
    keep = valid.nonzero().squeeze(1)
    keep = keep[nms(boxes[keep], scores[keep], nms_iou)]  # by decreasing score
    confident = int((scores[keep] > min_score).sum())
    return keep[: min(max_regions, max(confident, min_regions))]


class ProductDetector(nn.Module):
    """Faster R-CNN (ResNet-FPN) with a 2048-d box head and an optional attribute head."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        if config.backbone not in BACKBONES:
            raise TaommError(f"unknown detector backbone {config.backbone!r} (choose from {', '.join(BACKBONES)})")
        self.config = config
        if config.norm not in ("batch", "frozen"):
            raise TaommError(f"unknown detector norm {config.norm!r} (batch or frozen)")
        # From scratch, trainable BatchNorm: frozen BN (torchvision's default for pretrained
        # backbones) diverges without pretrained statistics.
        norm = FrozenBatchNorm2d if config.norm == "frozen" else nn.BatchNorm2d
        backbone = resnet_fpn_backbone(backbone_name=config.backbone, weights=None, norm_layer=norm,
                                       trainable_layers=config.trainable_layers)
        if config.fpn_channels != backbone.out_channels:  # a narrower pyramid than torchvision's 256
            widths = [block[0].in_channels for block in backbone.fpn.inner_blocks]
            backbone.fpn = FeaturePyramidNetwork(widths, config.fpn_channels, extra_blocks=LastLevelMaxPool())
            backbone.out_channels = config.fpn_channels
        pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
        self.pixels = PixelDescriptor(config.pixel_silhouette, config.pixel_recentre, config.pixel_details,
                                      config.pixel_interior) \
            if config.pixel_features else None
        self.pixel_scale = Standardiser(self.pixels.dim) if self.pixels is not None else None
        learned = config.representation_size - (self.pixels.dim if self.pixels is not None else 0)
        if self.pixels is not None and learned < 64:
            raise TaommError(f"a {config.representation_size}-d region vector leaves {learned} dimensions to learn "
                             f"beside the {self.pixels.dim} pixel statistics; widen it or drop the pixel features")
        head = TwoMLPHead(backbone.out_channels * 7 * 7, learned)
        self.rcnn = FasterRCNN(
            backbone, box_roi_pool=pool, box_head=head,
            box_predictor=FastRCNNPredictor(config.representation_size, len(config.classes) + 1),
            min_size=config.min_size, max_size=config.max_size,
            rpn_pre_nms_top_n_train=config.rpn_pre_nms_top_n_train,
            rpn_post_nms_top_n_train=config.rpn_post_nms_top_n_train,
            rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
            rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
            box_batch_size_per_image=config.box_batch_size_per_image,
        )
        self.attribute_head = nn.Linear(config.representation_size, config.num_attributes) \
            if config.num_attributes else None

    def losses(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]],
               attribute_rois: str = "sampled") -> dict[str, torch.Tensor]:
        """Training losses. images: (3, H, W) float in [0, 1]; targets: boxes (N, 4) pixels,
        labels (N,) taxonomy ids, optionally attributes (N, A): one-hot per attribute group
        (all zero in a group the box does not have).

        The attribute loss is taken on the same 2048-d vectors as the class loss: every
        sampled foreground RoI (IoU >= 0.5 with an annotated box) learns that box's
        attributes (``attribute_rois="sampled"``, as bottom-up-attention trains them), so
        the features keep pattern and colour on the imprecise boxes extraction returns;
        ``"gt"`` takes the annotated boxes alone (one extra box-head pass)."""
        rcnn, heads = self.rcnn, self.rcnn.roi_heads
        shifted = [{**t, "labels": t["labels"] + 1} for t in targets]  # background is 0 inside
        batch, shifted = rcnn.transform(images, shifted)
        features, maps = rcnn.backbone(batch.tensors), self._pixel_maps(batch.tensors)
        proposals, rpn_losses = rcnn.rpn(batch, features, shifted)
        proposals, matched, labels, regression_targets = heads.select_training_samples(proposals, shifted)
        vectors = self._vectors(features, maps, proposals, batch.image_sizes)
        class_logits, box_regression = heads.box_predictor(vectors)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        losses = {**rpn_losses, "loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        if self.attribute_head is not None and all("attributes" in t for t in targets):
            if attribute_rois == "gt":
                gt_boxes = [t["boxes"] for t in shifted]
                vectors = self._vectors(features, maps, gt_boxes, batch.image_sizes)
                wanted = torch.cat([t["attributes"] for t in targets])
            else:
                foreground = torch.cat(labels) > 0
                vectors = vectors[foreground]
                wanted = torch.cat([t["attributes"][m.clamp(min=0)] for t, m in zip(targets, matched, strict=True)])
                wanted = wanted[foreground]
            losses["loss_attributes"] = self.attribute_loss(self.attribute_head(vectors).float(), wanted)
        return losses

    def _pixel_maps(self, tensors: torch.Tensor) -> dict[str, tuple[torch.Tensor, float]] | None:
        """The pixel statistics' maps of a transformed batch (its normalisation undone)."""
        if self.pixels is None:
            return None
        transform = self.rcnn.transform
        mean = torch.tensor(transform.image_mean, device=tensors.device).view(1, 3, 1, 1)
        std = torch.tensor(transform.image_std, device=tensors.device).view(1, 3, 1, 1)
        return self.pixels.maps(tensors.float() * std + mean)

    def _vectors(self, features: dict[str, torch.Tensor], maps: dict[str, tuple[torch.Tensor, float]] | None,
                 boxes: list[torch.Tensor], image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """Region vectors (N, representation_size) of boxes (pixels of the transformed batch):
        the box head's output, then the pixel statistics (standardised) when the detector has them."""
        heads = self.rcnn.roi_heads
        learned = heads.box_head(heads.box_roi_pool(features, boxes, image_sizes))
        if maps is None:
            return learned
        statistics = self.pixels(maps, boxes, image_sizes)
        return torch.cat([learned, self.pixel_scale(statistics).to(learned.dtype)], 1)

    def attribute_loss(self, logits: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        """Each attribute group (colour, pattern ...) holds one value per box: a softmax
        cross-entropy per group over the boxes that have it, averaged over the groups. (A
        binary loss averaged over every attribute dimension gave a gradient too weak to keep
        colour in the features: a linear probe read colour at 38% from them; summed over
        groups instead of averaged, it swamped the detection losses: mAP@0.5 0.07. Measured.)"""
        losses = []
        start = 0
        for values in self.config.attributes.values():
            part, target = logits[:, start:start + len(values)], wanted[:, start:start + len(values)]
            start += len(values)
            has = target.sum(1) > 0
            if has.any():
                losses.append(F.cross_entropy(part[has], target[has].argmax(1)))
        return torch.stack(losses).mean() if losses else logits.new_zeros(())

    @torch.no_grad()
    def extract(self, images: list[torch.Tensor], max_regions: int = MAX_REGIONS, min_score: float = MIN_SCORE,
                nms_iou: float = NMS_IOU, min_regions: int = 1) -> list[dict[str, torch.Tensor]]:
        """Regions per image: class-agnostic NMS over each proposal's best class, score >
        ``min_score``, at most ``max_regions``; with fewer than ``min_regions`` above the
        score, the best-scoring others after NMS fill up to it (the bottom-up-attention
        convention of 10-100 regions for ``en``); at least one (the whole image when no
        proposal is left). Returns boxes (N, 4) pixels of the input image, features (N, D), labels
        (N,) taxonomy ids, scores (N,). A region's feature is read at its returned (refined) box,
        not at the proposal it was refined from, so that the vector describes what the box holds."""
        rcnn = self.rcnn
        sizes = [img.shape[-2:] for img in images]
        batch, _ = rcnn.transform(images)
        features, maps = rcnn.backbone(batch.tensors), self._pixel_maps(batch.tensors)
        proposals, _ = rcnn.rpn(batch, features)
        heads = rcnn.roi_heads
        vectors = self._vectors(features, maps, proposals, batch.image_sizes)
        logits, deltas = heads.box_predictor(vectors)
        counts = [len(p) for p in proposals]
        out, kept = [], []
        for i, (logit, delta, props) in enumerate(zip(logits.split(counts), deltas.split(counts), proposals,
                                                      strict=True)):
            boxes = heads.box_coder.decode(delta, [props]).reshape(len(props), -1, 4)  # (P, C+1, 4)
            probs = logit.float().softmax(-1)[:, 1:]  # foreground classes
            score, label = probs.max(-1)
            best = boxes[torch.arange(len(props)), label + 1]
            h, w = batch.image_sizes[i]
            best[:, 0::2] = best[:, 0::2].clamp(0, w)
            best[:, 1::2] = best[:, 1::2].clamp(0, h)
            keep = select_regions(best, score, max_regions, min_score, nms_iou, min_regions)
            scale = torch.tensor([sizes[i][1] / w, sizes[i][0] / h] * 2, device=best.device)
            kept.append(best[keep])
            if len(keep):
                region = {"boxes": best[keep] * scale, "labels": label[keep], "scores": score[keep]}
            else:
                region = self._whole_image(features, maps, i, batch.image_sizes[i], sizes[i])
            region["boxes"][:, 0::2] = region["boxes"][:, 0::2].clamp(0, sizes[i][1])
            region["boxes"][:, 1::2] = region["boxes"][:, 1::2].clamp(0, sizes[i][0])
            out.append(region)
        final = self._vectors(features, maps, kept, batch.image_sizes).split([len(k) for k in kept])
        for region, vectors_here in zip(out, final, strict=True):
            if len(vectors_here):  # the whole-image fallback brought its own
                region["features"] = vectors_here
        return out

    @torch.no_grad()
    def features_at(self, images: list[torch.Tensor], boxes: list[torch.Tensor]) -> list[torch.Tensor]:
        """Box-head features (N, D) of given regions, e.g. annotated boxes (VCR).

        images: (3, H, W) float in [0, 1]; boxes: (N, 4) pixels of that image. Each image
        goes through the backbone alone (no padding shared with the other images), so its
        features do not depend on what else is in the call."""
        rcnn = self.rcnn
        out = []
        for image, regions in zip(images, boxes, strict=True):
            batch, _ = rcnn.transform([image])
            features, maps = rcnn.backbone(batch.tensors), self._pixel_maps(batch.tensors)
            # the transform resized the image: boxes follow into its coordinates
            scaled = resize_boxes(regions.to(batch.tensors), list(image.shape[-2:]), list(batch.image_sizes[0]))
            out.append(self._vectors(features, maps, [scaled], batch.image_sizes))
        return out

    def _whole_image(self, features, maps, index, resized, original) -> dict[str, torch.Tensor]:
        h, w = resized
        box = torch.tensor([[0.0, 0.0, float(w), float(h)]], device=features["0"].device)
        one = {k: v[index:index + 1] for k, v in features.items()}
        its_maps = None if maps is None else {k: (v[index:index + 1], scale) for k, (v, scale) in maps.items()}
        vec = self._vectors(one, its_maps, [box], [resized])
        prob = self.rcnn.roi_heads.box_predictor(vec)[0].float().softmax(-1)[:, 1:]
        score, label = prob.max(-1)
        whole = torch.tensor([[0.0, 0.0, float(original[1]), float(original[0])]], device=box.device)
        return {"boxes": whole, "features": vec, "labels": label, "scores": score}

    @torch.no_grad()
    def detect(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """torchvision's per-class post-processing (for COCO evaluation): boxes, labels (taxonomy ids), scores."""
        rcnn, heads = self.rcnn, self.rcnn.roi_heads
        sizes = [tuple(img.shape[-2:]) for img in images]
        batch, _ = rcnn.transform(images)
        features, maps = rcnn.backbone(batch.tensors), self._pixel_maps(batch.tensors)
        proposals, _ = rcnn.rpn(batch, features)
        logits, deltas = heads.box_predictor(self._vectors(features, maps, proposals, batch.image_sizes))
        boxes, scores, labels = heads.postprocess_detections(logits, deltas, proposals, batch.image_sizes)
        out = [{"boxes": b, "scores": s, "labels": c} for b, s, c in zip(boxes, scores, labels, strict=True)]
        out = rcnn.transform.postprocess(out, batch.image_sizes, sizes)
        return [{**d, "labels": d["labels"] - 1} for d in out]

    # --- save / load -------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_NAME).write_text(json.dumps(asdict(self.config), ensure_ascii=False, indent=2), "utf-8")
        tmp = out / (WEIGHTS_NAME + ".tmp")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp))
        os.replace(tmp, out / WEIGHTS_NAME)
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike[str], map_location: str = "cpu") -> ProductDetector:
        folder = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (folder / name).is_file():
                raise TaommError(f"{folder} is not a taomm detector (no {name}); train one with `taomm train-detector`")
        saved = json.loads((folder / CONFIG_NAME).read_text("utf-8"))
        saved.setdefault("pixel_silhouette", False)  # saved before the silhouette statistics
        saved.setdefault("pixel_recentre", False)  # saved before the silhouette found the object's extent
        saved.setdefault("pixel_details", False)  # saved before the line and hem statistics
        saved.setdefault("pixel_interior", False)  # saved before the statistics of the object's inside
        model = cls(DetectorConfig(**saved))
        state = load_file(str(folder / WEIGHTS_NAME), device=map_location)
        own = model.state_dict()
        resized = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
        missing, unexpected = own.keys() - state.keys(), state.keys() - own.keys()
        if missing or unexpected or resized:
            raise TaommError(f"{folder}: weights do not match {CONFIG_NAME} (missing {sorted(missing)[:3]}, "
                             f"unexpected {sorted(unexpected)[:3]}, another shape {resized[:3]})")
        model.load_state_dict(state)
        return model


# --- pretrained weights (torchvision's layouts) ------------------------------------------

PRETRAINED = ("coco", "imagenet")
# Layers of a torchvision checkpoint that taomm replaces: the COCO box head (1024-d, ours is
# the 2048-d region feature) and 91-class predictor, the ImageNet classifier.
_NEW_LAYERS = ("roi_heads.box_head.", "roi_heads.box_predictor.", "fc.")


def pretrained_state(weights: str, backbone: str) -> dict[str, torch.Tensor]:
    """The state dict behind ``--weights``: ``coco`` (torchvision's Faster R-CNN ResNet-50-FPN,
    COCO), ``imagenet`` (torchvision's ImageNet weights of the backbone), both through
    torchvision's weights API (downloaded once into the torch hub cache, hash-checked), or a
    local file in either layout (``.safetensors``, or a ``torch.save``d state dict read with
    ``weights_only=True``; a ``{"model": state}`` checkpoint too)."""
    if weights in PRETRAINED:
        import torchvision

        if weights == "coco":
            if backbone != "resnet50":
                raise OptionError("{weights=coco} is torchvision's Faster R-CNN ResNet-50-FPN: use "
                                  "{backbone=resnet50} (or {weights=imagenet} for another backbone)",
                                  "weights=coco", "backbone=resnet50", "weights=imagenet")
            entry = torchvision.models.detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1
        else:
            entry = torchvision.models.get_model_weights(backbone).IMAGENET1K_V1
        try:
            return torch.hub.load_state_dict_from_url(entry.url, progress=True, check_hash=True, weights_only=True)
        except OSError as exc:  # URLError included: no network
            raise OptionError(f"cannot fetch torchvision's {weights} weights ({exc}); on a machine without network "
                              f"download {entry.url} elsewhere and pass its path as {{weights}}", "weights") from None
    path = Path(weights)
    if not path.is_file():
        raise OptionError(f"{{weights}} {weights}: not coco, imagenet or a file", "weights")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file, or one that needs pickle beyond tensors
        raise TaommError(f"cannot read weights {path}: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TaommError(f"{path} holds no state dict of tensors")
    return state


def load_pretrained(model: ProductDetector, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Load a torchvision state dict into ``model``, accounting for every key.

    Two layouts: a detection model's (``backbone.body.*``, ``backbone.fpn.*``, ``rpn.*``,
    ``roi_heads.*``, as ``fasterrcnn_resnet50_fpn``) or a classification backbone's
    (``conv1.*``, ``layer1.*`` ... ``fc.*``, as ``resnet50``). The replaced layers (box head,
    predictor, classifier) are listed as ``new``; a key the model cannot take, or a shape
    that differs, is an error. Returns counts and the lists."""
    own = model.state_dict()
    if any(k.startswith("backbone.body.") for k in state):
        layout, prefix = "detection", "rcnn."
    elif "conv1.weight" in state and any(k.startswith("layer1.") for k in state):
        layout, prefix = "backbone", "rcnn.backbone.body."
    else:
        raise TaommError("weights are in neither of torchvision's layouts (a Faster R-CNN's backbone.body.* keys, "
                         f"or a ResNet's conv1/layer1 keys); first keys: {list(state)[:3]}")
    mapped, new, dropped, unknown, shapes = {}, [], [], [], []
    for key, value in state.items():
        if key.startswith(_NEW_LAYERS):
            new.append(key)
            continue
        target = prefix + key
        if target not in own:
            # frozen BatchNorm keeps no batch counter
            (dropped if key.endswith("num_batches_tracked") else unknown).append(key)
        elif own[target].shape != value.shape:
            shapes.append(f"{key} {tuple(value.shape)} vs {tuple(own[target].shape)}")
        else:
            mapped[target] = value
    # what the layout must cover in full: a backbone file the ResNet, a detection file the FPN and RPN too
    covered = ("rcnn.backbone.body.",) if layout == "backbone" else ("rcnn.backbone.", "rcnn.rpn.")
    missing = [k for k in own if k.startswith(covered) and k not in mapped and not k.endswith("num_batches_tracked")]
    if unknown or shapes or missing:
        what = (f"unknown keys {unknown[:3]}" if unknown else f"other shapes {shapes[:3]}" if shapes
                else f"{len(missing)} tensors missing, e.g. {missing[:2]}")
        raise OptionError(f"weights do not fit a {model.config.backbone} detector: {what} "
                          "(is {backbone} the weights' backbone?)", "backbone")
    model.load_state_dict(mapped, strict=False)
    return {"layout": layout, "loaded": len(mapped), "new": new, "dropped": dropped,
            "initialised": sorted(k for k in own if k not in mapped)}
