"""tools/analyze_model.py: FLOPs and parameters against values worked out independently (the
VGG16 conv layers' closed form, the fc6/fc7 matrix sizes, torchvision's VGG16)."""
import io
import os
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torchvision

from frcnn_plugin.analysis.model_cost import parameter_counts
from frcnn_plugin.inspection.cli import build_inspection_model, setup_cfg
from tests.conftest import CONFIGS, load_tool

BASE = os.path.join(CONFIGS, "Base-VGG16-FRCNN.yaml")
LAZY_DEMO = os.path.join(CONFIGS, "lazy", "vgg16_frcnn_shapes_demo.py")

# VGG16's 13 conv layers: (C_in, C_out, stride of the map they run on); 3x3 kernels, a 2x2
# max-pool after conv1 ... conv4 (none after conv5)
VGG16_CONVS = [(3, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 2), (128, 256, 4),
               (256, 256, 4), (256, 256, 4), (256, 512, 8), (512, 512, 8), (512, 512, 8),
               (512, 512, 16), (512, 512, 16), (512, 512, 16)]


def vgg16_conv_flops(h, w):
    """Σ k²·C_in·C_out·H·W over the 13 layers (one multiply-add = one FLOP, as fvcore)."""
    return sum(3 * 3 * cin * cout * (h // s) * (w // s) for cin, cout, s in VGG16_CONVS)


def test_closed_form_by_hand():
    # conv1_1 at 16x16: 9 * 3 * 64 * 256 = 442 368; the closed form's first term
    assert vgg16_conv_flops(16, 16) - sum(
        9 * a * b * (16 // s) ** 2 for a, b, s in VGG16_CONVS[1:]) == 442368


def run(argv):
    tool = load_tool("analyze_model")
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        result = tool.main(argv)
    return result, out.getvalue()


@pytest.fixture(scope="module")
def base_flops():
    result, text = run(["--config-file", BASE, "--tasks", "flop", "--weights", "",
                        "--image-size", "64x96", "MODEL.DEVICE", "cpu"])
    return result["flop"], text


def test_vgg16_conv_flops_closed_form(base_flops):
    report, text = base_flops
    # 64x96: conv5 is 4x6; the plain VGG16 (no BN) of the paper's config
    assert report.by_module["backbone"] == vgg16_conv_flops(64, 96) == 1879179264
    assert "| backbone |" in text and "| RPN |" in text and "| box head |" in text


def test_fc6_fc7_flops_per_roi(base_flops):
    report, _ = base_flops
    assert report.proposals >= 1
    fc6, fc7 = 512 * 7 * 7 * 4096, 4096 * 4096  # 25 088 -> 4 096 -> 4 096
    assert report.by_module["roi_heads.box_head.fc6"] / report.proposals == fc6
    assert report.by_module["roi_heads.box_head.fc7"] / report.proposals == fc7
    assert report.per_roi() == fc6 + fc7


def test_backbone_parameters_equal_torchvision_vgg16_features():
    cfg = setup_cfg(BASE, ["MODEL.DEVICE", "cpu", "MODEL.ROI_BOX_HEAD.FC_DIM", "16"])
    model, _ = build_inspection_model(cfg, "")
    # torchvision's VGG16 without its classifier: the 13 conv layers' weights and biases
    reference = sum(p.numel() for p in torchvision.models.vgg16(weights=None).features
                    .parameters())
    assert parameter_counts(model)["backbone"] == reference == 14714688


def test_python_config_and_dataset_inputs(one_thread):
    result, text = run(["--config-file", LAZY_DEMO, "--tasks", "flop", "parameter", "structure",
                        "--weights", "", "--dataset", "frcnn_shapes_val", "-n", "1",
                        "model.backbone.norm=", "model.roi_heads.box_head.fc_dim=16"])
    # the shapes images are 128x128, tested at 128: the plain VGG16 closed form again
    assert result["flop"].by_module["backbone"] == vgg16_conv_flops(128, 128)
    assert "FRCNNGeneralizedRCNN" in result["structure"] and "backbone" in result["parameter"]
