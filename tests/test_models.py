"""Every registered model builds from its default cfg, runs forward and backward, and matches its description.

    .venv/bin/python -m pytest -q tests/test_models.py
"""
import pytest
import timm
import torch
from timm.layers.cbam import CbamModule  # not re-exported by timm.layers (timm 1.0.31)

import models
from models import MODEL_NAMES


def conv(in_chs, out_chs, k, bias=True):
    return in_chs * out_chs * k * k + (out_chs if bias else 0)


def bn(chs):  # gamma and beta; running stats are buffers
    return 2 * chs


def linear(in_f, out_f):
    return in_f * out_f + out_f


def basic_block(in_chs, out_chs, stride):
    shortcut = conv(in_chs, out_chs, 1, bias=False) + bn(out_chs) if stride != 1 or in_chs != out_chs else 0
    convs = conv(in_chs, out_chs, 3, bias=False) + bn(out_chs) + conv(out_chs, out_chs, 3, bias=False) + bn(out_chs)
    return convs + shortcut


def cbam(chs):  # channel MLP chs -> chs/16 -> chs without biases; spatial Conv7x7 2 -> 1 without bias, then BN
    return 2 * chs * (chs // 16) + conv(2, 1, 7, bias=False) + bn(1)


def resnet_cbam_params(stem_k):
    stages = ((64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2))
    body = sum(basic_block(i, o, s) + basic_block(o, o, 1) + cbam(o) for i, o, s in stages)
    return conv(1, 64, stem_k, bias=False) + bn(64) + body + linear(512, 7)


# Counted by hand from the layer descriptions in the model docstrings, not from the code.
EXPECTED_PARAMS = {
    'baseline_cnn': conv(1, 16, 3) + conv(16, 32, 3) + linear(32 * 12 * 12, 128) + linear(128, 7),
    'bn_cnn': sum(conv(i, o, 3) + bn(o) for i, o in ((1, 32), (32, 64), (64, 128), (128, 256)))
    + linear(256 * 3 * 3, 512) + bn(512) + linear(512, 128) + linear(128, 7),
    'resnet_cbam': resnet_cbam_params(stem_k=7),
    'resnet_cbam48': resnet_cbam_params(stem_k=3),
    'vgg_fer': sum(conv(i, o, 3) + bn(o) for i, o in ((1, 64), (64, 64), (64, 128), (128, 128), (128, 256),
                                                       (256, 256), (256, 512), (512, 512)))
    + linear(512 * 3 * 3, 4096) + linear(4096, 4096) + linear(4096, 7),
}
# (channels, height, width) out of forward_features on a 48x48 face, and the pre-logits width.
EXPECTED_FEATURES = {
    'baseline_cnn': ((32, 12, 12), 128),
    'bn_cnn': ((256, 3, 3), 128),
    'resnet_cbam': ((512, 2, 2), 512),
    'resnet_cbam48': ((512, 6, 6), 512),
    'vgg_fer': ((512, 3, 3), 4096),
}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_model_names_are_registered():
    assert set(MODEL_NAMES) <= set(timm.list_models())
    assert len(MODEL_NAMES) == len(set(MODEL_NAMES)) == 5


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_default_cfg_gives_7_classes_1_channel(name):
    model = timm.create_model(name)  # nothing passed: everything comes from default_cfgs
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert model.num_classes == 7 and model.get_classifier().out_features == 7
    assert first_conv.in_channels == 1
    assert model.pretrained_cfg['input_size'] == (1, 48, 48) and model.pretrained_cfg['num_classes'] == 7


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_param_count_matches_description(name):
    assert n_params(timm.create_model(name, num_classes=7, in_chans=1)) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_forward_backward_every_param_gets_a_gradient(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=7, in_chans=1).train()
    x = torch.randn(2, 1, 48, 48)
    feats = model.forward_features(x)
    chw, hidden = EXPECTED_FEATURES[name]
    assert feats.shape == (2, *chw) and model.num_features == chw[0]
    assert model.forward_head(feats, pre_logits=True).shape == (2, hidden)
    logits = model(x)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 6])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f'{pname} got no gradient'
        assert torch.isfinite(p.grad).all(), f'{pname} has a non-finite gradient'


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_channels_last_matches_contiguous(name):
    model = timm.create_model(name).eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert out.shape == (2, 7)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_reset_classifier(name):
    model = timm.create_model(name).eval()
    model.reset_classifier(3)
    assert model.num_classes == 3 and model(torch.randn(2, 1, 48, 48)).shape == (2, 3)


def test_flatten_sizes():
    assert timm.create_model('baseline_cnn').pre_logits[1].in_features == 4608
    assert timm.create_model('bn_cnn').pre_logits[1].in_features == 2304
    assert timm.create_model('vgg_fer').pre_logits[1].in_features == 4608


def test_vgg_fer_two_conv_bn_relu_per_stage_and_dropout():
    model = timm.create_model('vgg_fer')
    for stage, chs in zip(model.features, (64, 128, 256, 512)):
        kinds = [type(m) for m in stage]
        assert kinds == [torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU] * 2 + [torch.nn.MaxPool2d]
        assert stage[3].out_channels == chs and stage[3].kernel_size == (3, 3)
    drops = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.2, 0.2]
    assert [m.p for m in timm.create_model('vgg_fer', drop_rate=0.5).modules()
            if isinstance(m, torch.nn.Dropout)] == [0.5, 0.5]


@pytest.mark.parametrize('name, stem_k, reductions', [
    ('resnet_cbam', 7, [4, 8, 16, 32]),
    ('resnet_cbam48', 3, [1, 2, 4, 8]),
])
def test_resnet_cbam_stem_and_one_cbam_per_stage(name, stem_k, reductions):
    model = timm.create_model(name)
    assert model.stem[0].kernel_size == (stem_k, stem_k)
    assert isinstance(model.stem_pool, torch.nn.MaxPool2d) == (stem_k == 7)
    assert [f['reduction'] for f in model.feature_info] == reductions
    assert sum(isinstance(m, CbamModule) for m in model.modules()) == 4
    for stage, chs in zip(model.stages, (64, 128, 256, 512)):
        assert isinstance(stage[-1], CbamModule) and stage[-1].channel.fc1.in_channels == chs
