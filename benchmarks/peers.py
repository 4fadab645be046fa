"""The models the plugin is compared with, built from the plugin's own config.

* ``"plugin"``: ``build_model(cfg)``, the config as it is.
* ``"d2"``: detectron2's built-in RPN (``StandardRPNHead``) and ``StandardROIHeads`` in a
  ``GeneralizedRCNN``, with the same backbone, box head and every other key
  (:func:`d2_builtin_config`, as ``configs/vgg16_frcnn_d2_heads.yaml``).
* ``"torchvision"``: torchvision's ``FasterRCNN`` (:func:`build_torchvision_peer`) around the
  same backbone module (built by detectron2's ``build_backbone(cfg)``), with the config's
  anchors (the same cell anchors and offset), RPN and RoI settings, RoI pooling, an fc6/fc7
  head, image normalization and resize limits. :class:`TorchvisionFasterRCNN` wraps it in
  detectron2's model interface (list of dicts in; losses, or ``[{"instances": ...}]`` out) so
  that the same loaders, training loop and ``COCOEvaluator`` serve both.

What torchvision cannot express and therefore stays torchvision's own: its RPN head (one sigmoid
logit per anchor), RPN loss normalization (per sampled anchor), proposal minimum size (1e-3 in
input pixels), cross-boundary anchors (kept in training), and an ignore band below the
background IoU (``MODEL.ROI_HEADS.IOU_LABELS`` starting with -1; none).
"""
import os
from collections import OrderedDict
from types import SimpleNamespace
from typing import Dict, List, Tuple

import torch
from torch import nn

from torchvision import ops
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_anchor_generator, build_backbone, build_model
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from frcnn_plugin.errors import CheckpointError, MissingFileError
from frcnn_plugin.modeling.box_head import VGGFCHead
from frcnn_plugin.modeling.fc_svd import SVDLinear
from frcnn_plugin.weights import load_state_dict_file

__all__ = [
    "MODEL_KINDS",
    "TORCHVISION_AMP_MODULES",
    "PEER_INITS",
    "d2_builtin_config",
    "torchvision_box_head",
    "build_torchvision_peer",
    "TorchvisionFasterRCNN",
    "FixedStrideAnchorGenerator",
    "SingleLevelRoIPool",
    "copy_matching_weights",
    "init_torchvision_from_detectron2",
    "PRETRAINED_PREFIXES",
    "load_pretrained_parts",
    "build_benchmark_model",
]

MODEL_KINDS = ("plugin", "torchvision", "d2")


# the torchvision peer's modules that compute (paths from the peer wrapper), as
# frcnn_plugin.modeling.precision.AMP_MODULES: run under autocast for bf16
TORCHVISION_AMP_MODULES = ("model.backbone", "model.rpn.head", "model.roi_heads.box_head",
                           "model.roi_heads.box_predictor")

def d2_builtin_config(cfg):
    """A copy of ``cfg`` with detectron2's built-in meta-architecture, RPN, RPN head and ROI
    heads (and detectron2's anchor generator with the same sizes), everything else unchanged,
    except the box predictor's initialization: detectron2's own (the paper's; its
    ``StandardROIHeads`` do not read ``MODEL.ROI_BOX_HEAD.PREDICTOR_INIT``)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
    cfg.MODEL.RPN.HEAD_NAME = "StandardRPNHead"
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_BOX_HEAD.PREDICTOR_INIT = "paper"
    if cfg.MODEL.ANCHOR_GENERATOR.NAME == "FRCNNAnchorGenerator":
        shapes = build_backbone(cfg).output_shape()
        generator = build_anchor_generator(cfg, [shapes[f] for f in cfg.MODEL.RPN.IN_FEATURES])
        cfg.MODEL.ANCHOR_GENERATOR.NAME = "DefaultAnchorGenerator"
        cfg.MODEL.ANCHOR_GENERATOR.SIZES = [list(s) for s in generator.sizes]
    cfg.freeze()
    return cfg


def _single_feature(cfg) -> str:
    """The name of the one feature map that the RPN and the ROI heads use."""
    in_features = list(cfg.MODEL.RPN.IN_FEATURES)
    if len(in_features) != 1 or list(cfg.MODEL.ROI_HEADS.IN_FEATURES) != in_features:
        raise ValueError(
            "The torchvision peer supports one feature map shared by the RPN and the ROI heads; "
            "got MODEL.RPN.IN_FEATURES={} and MODEL.ROI_HEADS.IN_FEATURES={}".format(
                list(cfg.MODEL.RPN.IN_FEATURES), list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
            )
        )
    return in_features[0]


def _anchor_sizes_ratios(cfg, generator) -> Tuple[List[float], List[float]]:
    """The (one level's) anchor sizes and aspect ratios of a detectron2 anchor generator."""
    if hasattr(generator, "sizes"):  # FRCNNAnchorGenerator
        return list(generator.sizes[0]), list(generator.aspect_ratios[0])
    ag = cfg.MODEL.ANCHOR_GENERATOR
    sizes = ag.SIZES[0] if isinstance(ag.SIZES[0], (list, tuple)) else ag.SIZES
    ratios = ag.ASPECT_RATIOS[0] if isinstance(ag.ASPECT_RATIOS[0], (list, tuple)) else (
        ag.ASPECT_RATIOS)
    return list(sizes), list(ratios)


class _OneFeatureBackbone(nn.Module):
    """A detectron2 backbone restricted to one output, with torchvision's ``out_channels``."""

    def __init__(self, body: nn.Module, feature: str):
        super().__init__()
        self.body = body
        self.feature = feature
        self.out_channels = body.output_shape()[feature].channels

    def forward(self, x):
        return OrderedDict([(self.feature, self.body(x)[self.feature])])


class FixedStrideAnchorGenerator(AnchorGenerator):
    """torchvision's ``AnchorGenerator`` with detectron2's cell anchors, a fixed stride and an
    offset, so that the anchors equal detectron2's exactly, in the same order (torchvision's
    own rounds the cell anchors, orders them ratios-major, centres them at ``stride * i`` and
    infers the stride from the padded image size, which is off for sizes that are not
    multiples of the stride).

    Args:
        sizes, aspect_ratios (list[float]): the anchor sizes and ratios (one feature map).
        cell_anchors (Tensor): (len(sizes) * len(aspect_ratios), 4) anchors centred at 0.
        stride (int): stride of the feature map.
        offset (float): centre of the first anchor, in strides (detectron2's OFFSET).
    """

    def __init__(self, sizes, aspect_ratios, cell_anchors: torch.Tensor, stride: int,
                 offset: float):
        super().__init__((tuple(sizes),), (tuple(aspect_ratios),))
        if len(cell_anchors) != len(sizes) * len(aspect_ratios):
            raise ValueError("{} cell anchors for {} sizes x {} ratios".format(
                len(cell_anchors), len(sizes), len(aspect_ratios)))
        self.cell_anchors = [cell_anchors.detach().clone().float()]
        self.stride = int(stride)
        self.offset = float(offset)

    def forward(self, image_list, feature_maps: List[torch.Tensor]) -> List[torch.Tensor]:
        (feature,) = feature_maps
        h, w = feature.shape[-2:]
        self.set_cell_anchors(torch.float32, feature.device)
        shift_x = (torch.arange(w, device=feature.device) + self.offset) * self.stride
        shift_y = (torch.arange(h, device=feature.device) + self.offset) * self.stride
        sy, sx = torch.meshgrid(shift_y.float(), shift_x.float(), indexing="ij")
        sx, sy = sx.reshape(-1), sy.reshape(-1)
        shifts = torch.stack((sx, sy, sx, sy), dim=1)
        anchors = (shifts.view(-1, 1, 4) + self.cell_anchors[0].view(1, -1, 4)).reshape(-1, 4)
        anchors = anchors.to(feature.dtype)
        return [anchors for _ in image_list.image_sizes]


class SingleLevelRoIPool(MultiScaleRoIAlign):
    """One feature map pooled by ``torchvision.ops.RoIPool`` or ``RoIAlign`` with a fixed
    scale, behind ``MultiScaleRoIAlign``'s call signature (features dict, list of boxes, image
    shapes), which torchvision's ``RoIHeads`` uses. ``pooler_type`` is detectron2's
    ``POOLER_TYPE``: "ROIPool" -> ``ops.RoIPool``, "ROIAlign" -> ``ops.RoIAlign(aligned=False)``,
    "ROIAlignV2" -> ``ops.RoIAlign(aligned=True)``."""

    def __init__(self, feature: str, pooler_type: str, output_size: int, scale: float,
                 sampling_ratio: int = 0):
        super().__init__(featmap_names=[feature], output_size=output_size,
                         sampling_ratio=sampling_ratio)
        if pooler_type == "ROIPool":
            self.pool = ops.RoIPool(output_size, scale)
        elif pooler_type in ("ROIAlign", "ROIAlignV2"):
            self.pool = ops.RoIAlign(output_size, scale, sampling_ratio,
                                     aligned=pooler_type == "ROIAlignV2")
        else:
            raise ValueError(
                "MODEL.ROI_BOX_HEAD.POOLER_TYPE={!r} has no torchvision equivalent here; allowed: "
                "ROIPool, ROIAlign, ROIAlignV2".format(pooler_type)
            )
        self.feature = feature
        self.pooler_type = pooler_type

    def forward(self, x: Dict[str, torch.Tensor], boxes: List[torch.Tensor], image_shapes):
        return self.pool(x[self.feature], boxes)


def torchvision_box_head(in_channels: int, resolution: int, fc_dim: int, dropout: float):
    """fc6/fc7 + ReLU for the torchvision peer: the plugin's :class:`VGGFCHead` (torchvision's
    ``TwoMLPHead`` has no dropout, which VGG's classifier and ``MODEL.ROI_BOX_HEAD.DROPOUT``
    have), with ``nn.Linear``'s default initialization, as ``TwoMLPHead``'s."""
    head = VGGFCHead(
        ShapeSpec(channels=in_channels, height=resolution, width=resolution), fc_dim=fc_dim,
        dropout=dropout,
    )
    for fc in (head.fc6, head.fc7):
        fc.reset_parameters()
    return head


def build_torchvision_peer(cfg) -> "TorchvisionFasterRCNN":
    """torchvision's ``FasterRCNN`` with the config's settings (see the module docstring)."""
    feature = _single_feature(cfg)
    body = build_backbone(cfg)
    backbone = _OneFeatureBackbone(body, feature)
    stride = body.output_shape()[feature].stride
    d2_anchors = build_anchor_generator(cfg, [body.output_shape()[feature]])
    sizes, ratios = _anchor_sizes_ratios(cfg, d2_anchors)
    anchor_generator = FixedStrideAnchorGenerator(
        sizes, ratios, list(d2_anchors.cell_anchors)[0], stride, cfg.MODEL.ANCHOR_GENERATOR.OFFSET
    )
    num_anchors = anchor_generator.num_anchors_per_location()[0]
    conv_dims = list(cfg.MODEL.RPN.CONV_DIMS)
    if conv_dims not in ([-1], [backbone.out_channels]):
        raise ValueError("The torchvision peer supports MODEL.RPN.CONV_DIMS [-1] only")
    rpn = cfg.MODEL.RPN
    heads = cfg.MODEL.ROI_HEADS
    box = cfg.MODEL.ROI_BOX_HEAD
    res = box.POOLER_RESOLUTION
    fc_dim = box.FC_DIM
    pixel_scale = 255.0
    model = FasterRCNN(
        backbone,
        num_classes=None,
        min_size=cfg.INPUT.MIN_SIZE_TEST,
        max_size=cfg.INPUT.MAX_SIZE_TEST,
        image_mean=[m / pixel_scale for m in cfg.MODEL.PIXEL_MEAN],
        image_std=[s / pixel_scale for s in cfg.MODEL.PIXEL_STD],
        rpn_anchor_generator=anchor_generator,
        rpn_head=RPNHead(backbone.out_channels, num_anchors),
        rpn_pre_nms_top_n_train=rpn.PRE_NMS_TOPK_TRAIN,
        rpn_pre_nms_top_n_test=rpn.PRE_NMS_TOPK_TEST,
        rpn_post_nms_top_n_train=rpn.POST_NMS_TOPK_TRAIN,
        rpn_post_nms_top_n_test=rpn.POST_NMS_TOPK_TEST,
        rpn_nms_thresh=rpn.NMS_THRESH,
        rpn_fg_iou_thresh=rpn.IOU_THRESHOLDS[-1],
        rpn_bg_iou_thresh=rpn.IOU_THRESHOLDS[0],
        rpn_batch_size_per_image=rpn.BATCH_SIZE_PER_IMAGE,
        rpn_positive_fraction=rpn.POSITIVE_FRACTION,
        box_roi_pool=SingleLevelRoIPool(
            feature, box.POOLER_TYPE, res, 1.0 / stride, box.POOLER_SAMPLING_RATIO
        ),
        box_head=torchvision_box_head(
            backbone.out_channels, res, fc_dim,
            box.get("DROPOUT", 0.0) if box.NAME == "VGGFCHead" else 0.0,
        ),
        box_predictor=FastRCNNPredictor(fc_dim, heads.NUM_CLASSES + 1),
        box_score_thresh=heads.SCORE_THRESH_TEST,
        box_nms_thresh=heads.NMS_THRESH_TEST,
        box_detections_per_img=cfg.TEST.DETECTIONS_PER_IMAGE,
        box_fg_iou_thresh=heads.IOU_THRESHOLDS[-1],
        box_bg_iou_thresh=heads.IOU_THRESHOLDS[-1],
        box_batch_size_per_image=heads.BATCH_SIZE_PER_IMAGE,
        box_positive_fraction=heads.POSITIVE_FRACTION,
        bbox_reg_weights=tuple(box.BBOX_REG_WEIGHTS),
        # same padding as detectron2's ImageList for this backbone; inputs arrive resized by
        # the config's DatasetMapper, so training skips torchvision's random resize
        size_divisible=max(int(body.size_divisibility), 1),
        _skip_resize=True,
    )
    return TorchvisionFasterRCNN(model, input_format=cfg.INPUT.FORMAT, pixel_scale=pixel_scale)


class TorchvisionFasterRCNN(nn.Module):
    """A torchvision detection model behind detectron2's model interface.

    ``forward(batched_inputs)`` takes detectron2's inputs (dicts with "image", a uint8 CHW
    tensor in the config's channel order, optional "height"/"width" and, in training,
    "instances") and returns torchvision's loss dict in training, ``[{"instances": ...}]``
    with ``pred_boxes``, ``scores``, ``pred_classes`` (0-based) at (height, width) in eval.
    """

    def __init__(self, model: nn.Module, input_format: str = "RGB", pixel_scale: float = 255.0):
        super().__init__()
        self.model = model
        self.input_format = input_format
        self.pixel_scale = pixel_scale

    @property
    def device(self):
        return next(self.parameters()).device

    def prepare(self, batched_inputs: List[dict]):
        """(images, targets): float images scaled to [0, 1] on the model's device, and in
        training torchvision targets (boxes XYXY, labels 1 ... K; 0 is background)."""
        device = self.device
        images = [x["image"].to(device).float() / self.pixel_scale for x in batched_inputs]
        targets = None
        if self.training:
            targets = []
            for x in batched_inputs:
                inst = x["instances"].to(device)
                targets.append(
                    {"boxes": inst.gt_boxes.tensor, "labels": inst.gt_classes.long() + 1}
                )
        return images, targets

    def postprocess(self, outputs: List[Dict[str, torch.Tensor]], batched_inputs, images):
        """torchvision detections -> detectron2 Instances at each input's (height, width)."""
        results = []
        for out, x, image in zip(outputs, batched_inputs, images):
            h, w = image.shape[-2:]
            inst = Instances((h, w))
            inst.pred_boxes = Boxes(out["boxes"])
            inst.scores = out["scores"]
            inst.pred_classes = out["labels"] - 1
            height, width = x.get("height", h), x.get("width", w)
            results.append({"instances": detector_postprocess(inst, height, width)})
        return results

    def forward(self, batched_inputs: List[dict]):
        images, targets = self.prepare(batched_inputs)
        outputs = self.model(images, targets)
        if self.training:
            return outputs
        return self.postprocess(outputs, batched_inputs, images)


def copy_matching_weights(src: nn.Module, dst: nn.Module) -> List[str]:
    """Copy every parameter/buffer of ``src`` whose name and shape exist in ``dst``; returns the
    names copied."""
    dst_state = dst.state_dict()
    copied = {k: v for k, v in src.state_dict().items()
              if k in dst_state and dst_state[k].shape == v.shape}
    dst.load_state_dict(copied, strict=False)
    return sorted(copied)


TORCHVISION_INIT_PARTS = ("backbone", "rpn", "box_head", "predictor")


@torch.no_grad()
def init_torchvision_from_detectron2(peer: TorchvisionFasterRCNN, model: nn.Module,
                                     parts=TORCHVISION_INIT_PARTS) -> List[str]:
    """Give the torchvision peer the initial weights of a detectron2 model built from the same
    config, where the layers correspond: backbone, RPN conv and deltas (a softmax RPN head's
    two scores become the sigmoid logit fg - bg), fc6/fc7, and the predictor (background row
    moved from last to first; torchvision's background box deltas set to 0).

    Args:
        parts: which of "backbone", "rpn", "box_head" (fc6/fc7), "predictor" to copy.

    Returns:
        list[str]: the torchvision parameter names that were set.
    """
    tv = peer.model
    done = []
    if "backbone" in parts:
        done += ["backbone.body." + k
                 for k in copy_matching_weights(model.backbone, tv.backbone.body)]
    if "rpn" in parts:
        done += _copy_rpn_head(model.proposal_generator.rpn_head, tv)
    heads = model.roi_heads
    if "box_head" in parts:
        done += _copy_box_head(heads.box_head, tv)
    if "predictor" in parts:
        done += _copy_predictor(heads.box_predictor, tv)
    return done


def _copy_rpn_head(rpn_head, tv) -> List[str]:
    done = []
    tv_conv = next(m for m in tv.rpn.head.conv.modules() if isinstance(m, nn.Conv2d))
    if hasattr(rpn_head, "conv") and isinstance(rpn_head.conv, nn.Conv2d):
        if rpn_head.conv.weight.shape == tv_conv.weight.shape:
            tv_conv.weight.copy_(rpn_head.conv.weight)
            tv_conv.bias.copy_(rpn_head.conv.bias)
            done += ["rpn.head.conv.weight", "rpn.head.conv.bias"]
    if rpn_head.anchor_deltas.weight.shape == tv.rpn.head.bbox_pred.weight.shape:
        tv.rpn.head.bbox_pred.weight.copy_(rpn_head.anchor_deltas.weight)
        tv.rpn.head.bbox_pred.bias.copy_(rpn_head.anchor_deltas.bias)
        done += ["rpn.head.bbox_pred.weight", "rpn.head.bbox_pred.bias"]
    obj, cls = rpn_head.objectness_logits, tv.rpn.head.cls_logits
    a = cls.out_channels
    if obj.out_channels == a:
        cls.weight.copy_(obj.weight)
        cls.bias.copy_(obj.bias)
    elif obj.out_channels == 2 * a:  # softmax (bg block, fg block) -> sigmoid logit fg - bg
        cls.weight.copy_(obj.weight[a:] - obj.weight[:a])
        cls.bias.copy_(obj.bias[a:] - obj.bias[:a])
    done += ["rpn.head.cls_logits.weight", "rpn.head.cls_logits.bias"]
    return done


def _copy_box_head(box_head, tv) -> List[str]:
    done = []
    for name in ("fc6", "fc7"):
        src, dst = getattr(box_head, name, None), getattr(tv.roi_heads.box_head, name)
        if isinstance(src, SVDLinear):  # MODEL.ROI_BOX_HEAD.FC_SVD_RANKS: the product
            src = SimpleNamespace(weight=src.full_weight(), bias=src.us.bias)
        if src is not None and src.weight.shape == dst.weight.shape:
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
            done += ["roi_heads.box_head.{}.{}".format(name, p) for p in ("weight", "bias")]
    return done


def _copy_predictor(pred, tv) -> List[str]:
    done = []
    tv_pred = tv.roi_heads.box_predictor
    k = pred.cls_score.out_features - 1
    if tv_pred.cls_score.out_features == k + 1 and pred.bbox_pred.out_features == 4 * k:
        for p in ("weight", "bias"):  # background: detectron2's last row, torchvision's first
            src = getattr(pred.cls_score, p)
            getattr(tv_pred.cls_score, p).copy_(torch.cat([src[k:], src[:k]]))
        tv_pred.bbox_pred.weight[:4].zero_()
        tv_pred.bbox_pred.bias[:4].zero_()
        tv_pred.bbox_pred.weight[4:].copy_(pred.bbox_pred.weight)
        tv_pred.bbox_pred.bias[4:].copy_(pred.bbox_pred.bias)
        done += ["roi_heads.box_predictor." + n for n in (
            "cls_score.weight", "cls_score.bias", "bbox_pred.weight", "bbox_pred.bias")]
    return done


PEER_INITS = ("copied", "own")

# The parts of a detector an ImageNet classifier provides: the backbone and fc6/fc7.
PRETRAINED_PREFIXES = ("backbone.", "roi_heads.box_head.")


def load_pretrained_parts(path: str) -> Dict[str, torch.Tensor]:
    """The backbone and fc6/fc7 weights (:data:`PRETRAINED_PREFIXES`, the plugin's parameter
    names) of a checkpoint: what an ImageNet-pretrained classifier gives a detector, here taken
    from any plugin checkpoint (e.g. a model trained on another data set). The RPN and the box
    predictor are not taken.

    Raises:
        MissingFileError, CheckpointError: a missing or unreadable file, or one without such
            weights.
    """
    if not os.path.isfile(path):
        raise MissingFileError("pretrained checkpoint not found: {}".format(path))
    state = load_state_dict_file(path)
    if isinstance(state.get("model"), dict):
        state = state["model"]
    parts = {k: v for k, v in state.items()
             if k.startswith(PRETRAINED_PREFIXES) and torch.is_tensor(v)}
    if not parts:
        raise CheckpointError(
            "{} has no weights named {}*; allowed: a checkpoint of the plugin's model (e.g. "
            "model_final.pth of tools/train_net.py)".format(
                path, "* or ".join(PRETRAINED_PREFIXES)))
    return parts


def _load_parts(model: nn.Module, parts: Dict[str, torch.Tensor]) -> List[str]:
    """Load ``parts`` into a model with the plugin's names; every pretrained layer the model has
    must be there with the same shape."""
    state = model.state_dict()
    wanted = [k for k in state if k.startswith(PRETRAINED_PREFIXES)]
    missing = [k for k in wanted if k not in parts]
    bad = ["{} {} (model: {})".format(k, tuple(parts[k].shape), tuple(state[k].shape))
           for k in wanted if k in parts and parts[k].shape != state[k].shape]
    if missing or bad:
        raise CheckpointError(
            "pretrained weights do not fit the config's model: {}; allowed: a checkpoint of "
            "a model with the same backbone and box head (MODEL.VGG.DEPTH, MODEL.VGG.NORM, "
            "MODEL.ROI_BOX_HEAD.FC_DIM)".format(
                "; ".join((["missing " + ", ".join(missing[:3])] if missing else []) +
                          (["shape " + ", ".join(bad[:3])] if bad else []))))
    model.load_state_dict({k: parts[k] for k in wanted}, strict=False)
    return wanted


def build_benchmark_model(
    cfg, kind: str, seed: int = 0, init: str = "copied",
    pretrained: Dict[str, torch.Tensor] = None,
) -> Tuple[nn.Module, Dict[str, object]]:
    """Build one of :data:`MODEL_KINDS` with seeded initial weights.

    Args:
        init (str): for the peers, "copied": they start from the plugin model's weights where
            layers correspond (same start, so differences come from the designs); "own": each
            keeps its own default initialization (torchvision: its VGG's Kaiming-normal fan-out
            convolutions, ``MODEL.VGG.INIT "torchvision"``, and its heads' own init).
        pretrained (dict): backbone and fc6/fc7 weights (:func:`load_pretrained_parts`), as
            ImageNet weights are used: loaded into every model over its initialization; with
            "own", a peer keeps its own initialization of the other layers (RPN, predictor).

    Returns:
        (model, info): the model on ``cfg.MODEL.DEVICE`` and a dict describing it.
    """
    if kind not in MODEL_KINDS:
        raise ValueError("model kind {!r}; allowed: {}".format(kind, MODEL_KINDS))
    if init not in PEER_INITS:
        raise ValueError("init {!r}; allowed: {}".format(init, PEER_INITS))
    torch.manual_seed(seed)
    info = {"kind": kind, "init": "own" if kind == "plugin" else init}
    if kind != "plugin" and init == "own":
        if kind == "d2":
            model = build_model(d2_builtin_config(cfg))
        else:
            own = cfg.clone()
            own.defrost()
            if own.MODEL.BACKBONE.NAME == "build_vgg_backbone":
                own.MODEL.VGG.INIT = "torchvision"
            model = build_torchvision_peer(own).to(torch.device(cfg.MODEL.DEVICE))
        plugin = None
        if pretrained is not None and kind == "d2":  # the plugin's names: loaded directly
            info["pretrained_tensors"] = len(_load_parts(model, pretrained))
        elif pretrained is not None:  # torchvision's names: through a plugin model holding them
            holder = build_model(cfg)
            _load_parts(holder, pretrained)
            names = init_torchvision_from_detectron2(model, holder, ("backbone", "box_head"))
            info["pretrained_tensors"] = len(names)
            del holder
    else:
        plugin = build_model(cfg)
        if pretrained is not None:
            info["pretrained_tensors"] = len(_load_parts(plugin, pretrained))
    if kind == "plugin":
        model = plugin
    elif plugin is not None and kind == "d2":
        torch.manual_seed(seed)
        model = build_model(d2_builtin_config(cfg))
        info["weights_from_plugin"] = len(copy_matching_weights(plugin, model))
    elif plugin is not None:
        model = build_torchvision_peer(cfg).to(plugin.device)
        info["weights_from_plugin"] = len(init_torchvision_from_detectron2(model, plugin))
    if model is not plugin:
        del plugin
    info["class"] = "{}.{}".format(type(model).__module__, type(model).__name__)
    info["parameters"] = sum(p.numel() for p in model.parameters())
    info["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, info
