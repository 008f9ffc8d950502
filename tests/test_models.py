import pytest
import torch
import torchvision

from lsnc.models import build_model, feature_dim, parameter_count


def _paper_torchvision(name: str, num_classes: int) -> torch.nn.Module:
    """The paper's construction: torchvision ResNet, conv1 -> 3x3 stride 1, max-pool removed."""
    net = getattr(torchvision.models, name)(num_classes=num_classes)
    net.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = torch.nn.Identity()
    return net


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_full_width_matches_torchvision_with_cifar_stem(name):
    ours = build_model(name, 10, (3, 32, 32))
    ref = _paper_torchvision(name, 10)
    ours_shapes = {k.replace("classifier.", "fc."): v.shape for k, v in ours.state_dict().items()}
    ref_shapes = {k: v.shape for k, v in ref.state_dict().items()}
    assert ours_shapes == ref_shapes
    # Same weights -> same logits: the architectures are the same function.
    ref.load_state_dict({k.replace("classifier.", "fc."): v for k, v in ours.state_dict().items()})
    ours.eval(), ref.eval()
    x = torch.randn(2, 3, 32, 32)
    logits, feats = ours(x)
    torch.testing.assert_close(logits, ref(x))
    assert feats.shape == (2, ours.feature_dim) and ours.feature_dim == (512 if name == "resnet18" else 2048)


def test_outputs_and_classifier_contract():
    for name, shape, width in [("resnet18", (3, 16, 16), 8), ("mlp", (40,), 32)]:
        net = build_model(name, 7, shape, width=width)
        logits, feats = net(torch.randn(4, *shape))
        assert logits.shape == (4, 7)
        assert feats.shape == (4, net.feature_dim)
        assert net.classifier.bias is not None
        torch.testing.assert_close(net.classifier(feats), logits)


def test_width_scales_resnet():
    small = build_model("resnet18", 10, (3, 32, 32), width=16)
    assert small.feature_dim == 128
    n_small = sum(p.numel() for p in small.parameters())
    n_full = sum(p.numel() for p in build_model("resnet18", 10, (3, 32, 32)).parameters())
    assert n_small < n_full / 10


def test_bad_model_input():
    with pytest.raises(ValueError, match="choose one of"):
        build_model("vgg", 10, (3, 32, 32))
    with pytest.raises(ValueError, match="mlp"):
        build_model("resnet18", 10, (40,))


@pytest.mark.parametrize("name, width", [("resnet18", None), ("resnet18", 16), ("resnet50", None), ("mlp", 64)])
def test_feature_dim_without_building(name, width):
    shape = (40,) if name == "mlp" else (3, 32, 32)
    assert feature_dim(name, width) == build_model(name, 10, shape, width=width).feature_dim


@pytest.mark.parametrize("name,shape,width", [("resnet18", (3, 32, 32), 16), ("mlp", (40,), 64)])
def test_parameter_count_without_building(name, shape, width):
    built = build_model(name, 7, shape, width=width)
    assert parameter_count(name, 7, shape, width) == sum(p.numel() for p in built.parameters())
