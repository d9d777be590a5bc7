"""Every registered model builds from its default cfg, runs forward and backward, holds timm's model contract
(as timm's own tests check it), and matches its description.

    .venv/bin/python -m pytest -q tests/test_models.py
"""
import math
from pathlib import Path

import pytest
import timm
import torch
from timm import set_scriptable
from timm.layers.cbam import CbamModule  # not re-exported by timm.layers (timm 1.0.31)
from timm.models import get_notrace_functions, get_notrace_modules

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


def test_model_names_are_the_registry_of_the_models_package():
    """MODEL_NAMES is whatever the model files registered, each file at least one name: no list to keep."""
    ours = {n for n in timm.list_models() if timm.models.model_entrypoint(n).__module__.startswith('models.')}
    assert set(MODEL_NAMES) == ours and len(MODEL_NAMES) == len(set(MODEL_NAMES))
    files = {p.stem for p in Path(models.__file__).parent.glob('*.py') if p.stem != 'fer' and p.stem[0] != '_'}
    assert {timm.models.model_entrypoint(n).__module__.split('.')[-1] for n in MODEL_NAMES} == files
    assert set(EXPECTED_PARAMS) <= set(MODEL_NAMES) and set(EXPECTED_FEATURES) <= set(MODEL_NAMES)


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_default_cfg_gives_7_classes_1_channel(name):
    model = timm.create_model(name)  # nothing passed: everything comes from default_cfgs
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert model.num_classes == 7 and model.get_classifier().out_features == 7
    assert first_conv.in_channels == 1
    assert model.pretrained_cfg['input_size'] == (1, 48, 48) and model.pretrained_cfg['num_classes'] == 7


@pytest.mark.parametrize('name', EXPECTED_PARAMS)
def test_param_count_matches_description(name):
    assert n_params(timm.create_model(name, num_classes=7, in_chans=1)) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize('name', EXPECTED_FEATURES)
def test_feature_shapes_match_description(name):
    model = timm.create_model(name).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 1, 48, 48))
        chw, hidden = EXPECTED_FEATURES[name]
        assert feats.shape == (2, *chw) and model.num_features == chw[0]
        assert model.forward_head(feats, pre_logits=True).shape == (2, hidden)


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_forward_backward_every_param_gets_a_gradient(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=42, in_chans=1).train()  # 42 as in timm's test_model_backward
    logits = model(torch.randn(2, 1, 48, 48))
    assert logits.shape == (2, 42) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 41])).backward()
    for pname, p in model.named_parameters():
        if not p.requires_grad:  # frozen by design (air_fer's BatchNorm scales): must get none
            assert p.grad is None and pname.endswith(('norm1.weight', 'norm2.weight')), pname
            continue
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


def test_flat_head_global_pool_off_and_back_on():
    model = timm.create_model('bn_cnn').eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        logits = model(x)
        with pytest.raises(ValueError, match='num_classes=0'):
            model.reset_classifier(7, '')  # an unpooled map has no classifier
        with pytest.raises(ValueError, match='avg'):
            model.reset_classifier(0, 'avg')
        model.reset_classifier(0, '')
        assert model(x).shape == (2, 256, 3, 3)
        fc = model.get_classifier()
        model.reset_classifier(7, 'flatten')  # the hidden layers were kept: only the classifier is new
        assert model(x).shape == (2, 7) and model.pre_logits[1].in_features == 2304
    assert isinstance(fc, torch.nn.Identity) and logits.shape == (2, 7)


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


# timm's model contract, as timm's own tests/test_models.py checks it (test_model_default_cfgs,
# test_model_forward_torchscript, test_model_forward_features, test_model_forward_fx, test_model_backward_fx;
# test_model_backward is test_forward_backward_every_param_gets_a_gradient above), on every architecture our
# registry holds: a Kaggler who takes a backbone for features, swaps the head,
# scripts or traces it gets what any timm model gives. Inputs are each model's default cfg input_size.

def input_for(model, batch_size=1):
    return torch.randn((batch_size, *model.pretrained_cfg['input_size']))


def fx_model(model, train=False):
    """timm's _create_fx_model: trace with timm's leaf modules, return the graph's last node (its output)."""
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names
    tracer_kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(),
                         param_shapes_constant=True)
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]],
                                    eval_return_nodes=[eval_nodes[-1]], tracer_kwargs=tracer_kwargs)


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_contract_default_cfg(name):
    model = timm.create_model(name).eval()
    cfg, state_dict = model.default_cfg, model.state_dict()
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    pool_size = cfg['pool_size']
    x = input_for(model)
    with torch.no_grad():
        feats = model.forward_features(x)  # unpooled: (1, num_features, *pool_size)
        pre = model.forward_head(feats, pre_logits=True)
        assert feats.shape[1] == model.num_features and tuple(feats.shape[2:]) == tuple(pool_size)
        assert pre.shape[1] == model.head_hidden_size
        model.reset_classifier(0)  # no classifier: forward gives the pre-logits
        assert model.num_classes == 0
        out = model(x)
        assert out.shape == pre.shape == (1, model.head_hidden_size)
        model.reset_classifier(0, '')  # no classifier, no pooling: forward gives the unpooled map
        assert model(x).shape == feats.shape
        model = timm.create_model(name, num_classes=0, global_pool='').eval()  # the same, through __init__
        assert model(x).shape == feats.shape
    classifier = cfg['classifier'] if isinstance(cfg['classifier'], (tuple, list)) else (cfg['classifier'],)
    first_conv = cfg['first_conv'] if isinstance(cfg['first_conv'], (tuple, list)) else (cfg['first_conv'],)
    for layer in (*classifier, *first_conv):
        assert layer + '.weight' in state_dict, f'{layer} (default cfg) is not a layer of {name}'


@pytest.mark.filterwarnings('ignore:`torch.jit.script` is deprecated')
@pytest.mark.parametrize('name', MODEL_NAMES)
def test_contract_torchscript(name):
    with set_scriptable(True):
        model = timm.create_model(name).eval()
    x = input_for(model)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_contract_features_only(name):
    model = timm.create_model(name, features_only=True).eval()
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    # timm asks its zoo for >= 3 levels; ours have one level per conv stage, and baseline_cnn has two stages.
    assert len(channels) >= 2
    size = model.pretrained_cfg['input_size'][-2:]
    with torch.no_grad():
        outputs = model(input_for(model))
    assert len(outputs) == len(channels)
    for chs, r, o in zip(channels, reductions, outputs):
        assert o.shape[:2] == (1, chs) and not torch.isnan(o).any()
        assert o.shape[2] <= math.ceil(size[0] / r) + 1 and o.shape[3] <= math.ceil(size[1] / r) + 1
    assert outputs[-1].shape[1:] == (channels[-1], *model.pretrained_cfg['pool_size'])  # forward_features' map


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_contract_fx_forward_and_backward(name):
    model = timm.create_model(name).eval()
    x = input_for(model)
    with torch.inference_mode():
        expected = model(x)
        traced = tuple(fx_model(model)(x).values())[0]
    assert torch.equal(traced, expected)
    model = fx_model(timm.create_model(name, num_classes=42).train(), train=True)
    outputs = tuple(model(torch.randn(2, *x.shape[1:])).values())[0]
    outputs.mean().backward()
    assert outputs.shape[-1] == 42
    for pname, p in model.named_parameters():
        assert p.grad is not None or not p.requires_grad, f'no gradient for {pname}'
